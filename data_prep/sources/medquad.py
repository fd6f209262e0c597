"""MedQuAD (Ben Abacha & Demner-Fushman, 2019): question-answer pairs from NIH sites, published as XML files.

    python -m data_prep convert medquad data/published/sft/medquad/medquad_raw_xml.tar.xz --out medquad.jsonl

An input is the published archive itself (``.tar.xz``, ``.tar.gz``, ``.tar``), a folder of XML files (read
recursively, in path order) or one ``.xml`` file. Each file is a ``<Document id source url>`` with ``<Focus>``
and ``<QAPairs>`` of ``<QAPair pid><Question qid qtype>..</Question><Answer>..</Answer></QAPair>``; one CDC
file's root is ``<DiseaseFile fid ...>`` and four NINDS files keep an older layout (``<doc docid corpus>``,
``<doctitle-focus>``, ``<qaPairs><pair><question>``, ``<answer>``): all are read, giving the paper's 47,457 pairs.

One row per pair: ``file`` names the archive and member (``medquad_raw_xml.tar.xz:1_CancerGov_QA/0000001_1.xml``),
``where`` is ``pair N`` (1-based, in the file's order). A file that is not well-formed XML, declares a DTD or
entities (refused by defusedxml), has another root or holds no pair is one row with the reason, ``whole file``.
User turn: the question; assistant turn: the answer, each with the XML's indentation removed (every line
stripped, runs of blank lines made one: paragraph breaks stay). Rejected: an empty question, a pair without an
answer; upstream removed the answers of MedlinePlus ADAM, Drugs and Herbs for copyright (31,029 pairs).
The document id, source, focus and qtype stay in the source row (the rejects file shows them), not in the
training row: a key some rows have and others lack breaks the datasets JSON loader Axolotl reads rows with.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml
import defusedxml.ElementTree as SafeXML

from common.files import DECOMPRESS_ERRORS, plain_name
from data_prep.readers import HUB_PREFIX, RawRow
from data_prep.rows import Reject, message, sft_row

NAME = "medquad"
KIND = "sft"
SUMMARY = "MedQuAD XML (Document > QAPairs > QAPair: Question, Answer): the .tar.xz, a folder or one .xml"

WHOLE_FILE = "whole file"
# Upstream emptied these sources' answers (MedlinePlus copyright); their Document source attribute.
COPYRIGHT_REMOVED = {"ADAM": "A.D.A.M. encyclopedia", "MPlusDrugs": "MedlinePlus drugs",
                     "MPlusHerbsSupplements": "MedlinePlus herbs and supplements"}


@dataclass(frozen=True)
class Layout:
    """Where one root's attributes and elements are."""

    id: str
    source: str
    focus: str
    pairs: str
    question: str
    answer: str


LAYOUTS = {
    "Document": Layout("id", "source", "Focus", "QAPairs/QAPair", "Question", "Answer"),
    "DiseaseFile": Layout("fid", "source", "Focus", "QAPairs/QAPair", "Question", "Answer"),
    "doc": Layout("docid", "corpus", "doctitle-focus", "qaPairs/pair", "question", "answer"),
}


def text_of(element: Element | None) -> str | None:
    """All the text inside ``element`` (None when there is no such element)."""
    return None if element is None else "".join(element.itertext())


def parse_error(err: Exception) -> str:
    """Why defusedxml refused a file, in a rejects-file reason."""
    if isinstance(err, defusedxml.DTDForbidden):
        return "XML declares a DTD (refused by defusedxml)"
    if isinstance(err, defusedxml.EntitiesForbidden):
        return "XML declares entities (refused by defusedxml)"
    if isinstance(err, defusedxml.DefusedXmlException):
        return f"XML refused by defusedxml: {type(err).__name__}"
    return f"malformed XML: {err}"


def file_rows(name: str, data: bytes) -> Iterator[RawRow]:
    """The rows of one XML file: one per pair, or one ``whole file`` row with the reason it gives none."""
    try:
        root = SafeXML.fromstring(data, forbid_dtd=True)
    except (SafeXML.ParseError, defusedxml.DefusedXmlException) as err:
        yield RawRow(name, WHOLE_FILE, data.decode("utf-8", "backslashreplace"), parse_error(err))
        return
    layout = LAYOUTS.get(root.tag)
    pairs = root.findall(layout.pairs) if layout else []
    if layout is None or not pairs:
        reason = f"not a MedQuAD document: root element <{root.tag}>" if layout is None else \
            "no question-answer pairs in the file"
        yield RawRow(name, WHOLE_FILE, data.decode("utf-8", "backslashreplace"), reason)
        return
    document = {"document": root.get(layout.id), "source": root.get(layout.source), "url": root.get("url"),
                "focus": (text_of(root.find(layout.focus)) or "").strip() or None}
    for number, pair in enumerate(pairs, start=1):
        question = pair.find(layout.question)
        yield RawRow(name, f"pair {number}", {
            **document, "pid": pair.get("pid"),
            "qid": None if question is None else question.get("qid"),
            "qtype": None if question is None else question.get("qtype"),
            "question": text_of(question), "answer": text_of(pair.find(layout.answer))})


def read_archive(path: Path, spec: str) -> Iterator[RawRow]:
    """The rows of every ``.xml`` member of a tar archive, in the archive's order (read as a stream)."""
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    handle = archive.extractfile(member)
                    yield from file_rows(f"{spec}:{member.name}", handle.read() if handle else b"")
    except (tarfile.TarError, *DECOMPRESS_ERRORS) as err:
        raise SystemExit(f"{spec}: not a readable tar archive ({type(err).__name__}: {err})") from None


def read(spec: str) -> Iterator[RawRow]:
    """The rows of one input: the archive, a folder of XML files, or one XML file."""
    path = Path(spec)
    if spec.startswith(HUB_PREFIX):
        raise SystemExit(f"{spec}: medquad reads the published XML (the archive, a folder or a file), not the hub")
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*.xml") if p.is_file()):
            yield from file_rows(str(file), file.read_bytes())
    elif path.is_file() and plain_name(path).endswith(".tar"):
        yield from read_archive(path, spec)
    elif path.is_file() and path.suffix == ".xml":
        yield from file_rows(spec, path.read_bytes())
    elif not path.exists():
        raise SystemExit(f"{spec}: no such file or folder")
    else:
        raise SystemExit(f"{spec}: expected MedQuAD's .tar.xz/.tar.gz archive, a folder of XML files or one .xml file")


def cleaned(text: str) -> str:
    """``text`` without the XML's indentation: each line stripped, a run of blank lines made one blank line."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def unanswered(source: Any) -> str:
    """The reason a pair without an answer is rejected, naming upstream's copyright removal where it applies."""
    if source in COPYRIGHT_REMOVED:
        return f"no answer: upstream removed the {COPYRIGHT_REMOVED[source]} answers ({source}) for copyright"
    return "no answer"


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise Reject("empty question")
    if not isinstance(answer, str) or not answer.strip():
        raise Reject(unanswered(record.get("source")))
    return sft_row([message("user", cleaned(question)), message("assistant", cleaned(answer))], system)
