"""The Axolotl plugins a recipe lists, as ``axolotl train`` loads them (used by ``python -m launch check``).

    python -m launch check recipes/openbiollm-8b/v3/sft.yaml

Axolotl registers a recipe's ``plugins`` before it validates the recipe (cli/config.py prepare_plugins), and its
validate_config merges each registered plugin's input args (a pydantic model: the plugin's recipe keys and their
validators) into its schema (integrations/config.py merge_input_args). Its plugin manager is one per process, so
a check of several recipes must register each recipe's plugins alone, and put back what was there.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any


@cache
def plugin_error(name: str) -> str | None:
    """Why Axolotl cannot load the plugin ``name`` (None: it loads). ``axolotl train`` only logs this and trains
    without the plugin (integrations/base.py PluginManager.register)."""
    from axolotl.integrations.base import load_plugin

    try:
        load_plugin(name)
    except (ImportError, AttributeError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def loadable_plugins(config: dict[str, Any]) -> list[str]:
    """The recipe's ``plugins`` that Axolotl can load here."""
    plugins = config.get("plugins")
    return [str(name) for name in plugins if plugin_error(str(name)) is None] if isinstance(plugins, list) else []


def plugin_problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, reason)`` for each plugin Axolotl could not load: it would train without it."""
    plugins = config.get("plugins")
    return [("plugins", f"plugin {name!r} does not load, so Axolotl would train without it: {plugin_error(str(name))}")
            for name in plugins if plugin_error(str(name))] if isinstance(plugins, list) else []


@cache
def plugin_args(name: str) -> Any:
    """The pydantic model of a plugin's recipe keys (its ``get_input_args``), None when it has none."""
    from axolotl.integrations.base import load_plugin

    dotted = load_plugin(name).get_input_args()
    if not dotted:
        return None
    module, _, cls = dotted.rpartition(".")
    return getattr(importlib.import_module(module), cls)


@contextmanager
def recipe_plugins(config: dict[str, Any]) -> Iterator[None]:
    """Axolotl's plugin manager holding exactly the recipe's plugins, as ``axolotl train`` registers them before it
    validates (cli/config.py prepare_plugins), so validate_config merges their keys and validators into the schema;
    the manager is a process-wide singleton, so what it held before comes back after. The plugins' register hooks
    (environment side effects) are not run."""
    from axolotl.integrations.base import PluginManager, load_plugin

    manager = PluginManager.get_instance()
    saved = manager.plugins
    manager.plugins = OrderedDict((name, load_plugin(name)) for name in loadable_plugins(config))
    try:
        yield
    finally:
        manager.plugins = saved
