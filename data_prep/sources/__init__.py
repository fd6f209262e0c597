"""The registry of source converters: one module per published schema, found by name.

A converter module defines:
    NAME     the SOURCE name on the command line (``medmcqa``, ``pref-pairs``, ...)
    KIND     ``"sft"`` or ``"dpo"``
    SUMMARY  one line: the schema it reads
    convert(record, system, **facts) -> row    raises rows.Reject with the reason
and optionally
    inspect(records) -> facts                  file-level facts (e.g. MedMCQA's answer index base)
    read(spec) -> Iterator[RawRow]             its own reader, for a format data_prep.readers does not know
                                               (MedQuAD's XML): convert.read_input and rowpass use it instead
                                               of readers.read_rows. One RawRow per source row, with its file
                                               and place; a part that cannot be read is a RawRow with an error,
                                               not an exception (only an unreadable input stops, in one line).

Adding a source is adding one module here and one fixture in data_prep/samples/.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load_sources() -> dict[str, ModuleType]:
    """Every converter module in this package, by its NAME."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            found[module.NAME] = module
    return dict(sorted(found.items()))
