"""MedQuAD's XML: one row per question-answer pair, traced to archive, member and pair; unanswered pairs and
files that are not usable XML are rejected with the reason, and nothing crashes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, read_jsonl

from data_prep.build import build
from data_prep.convert import convert
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT
from data_prep.sources import load_sources, medquad

ARCHIVE = ROOT / "data/published/sft/medquad/medquad_raw_xml.tar.xz"
MEMBERS = (  # a slice of the real archive: each layout and each kind of file it holds
    "1_CancerGov_QA/0000001_1.xml",  # 7 answered pairs, answers indented by the XML
    "10_MPlus_ADAM_QA/0000001.xml",  # 5 pairs whose answers upstream removed (copyright)
    "2_GARD_QA/0002079.xml",  # 1 pair with an empty answer, outside the copyright folders
    "5_NIDDK_QA/0000056.xml",  # an empty <QAPairs>
    "6_NINDS_QA/0000007.xml",  # the older layout: <doc>, <qaPairs><pair><question>, 4 answered pairs
    "9_CDC_QA/0000397.xml",  # root <DiseaseFile>, 5 pairs
)
ADAM = "no answer: upstream removed the A.D.A.M. encyclopedia answers (ADAM) for copyright"
HAND_MADE = {
    "bad/pairs.xml": b"""<?xml version="1.0" encoding="UTF-8"?>
<Document id="x1" source="ours" url="https://example.org">
<Focus>Fever</Focus>
<QAPairs>
  <QAPair pid="1"><Question qid="x1-1" qtype="information">  </Question><Answer>An answer.</Answer></QAPair>
  <QAPair pid="2"><Question qid="x1-2" qtype="information">What is fever ?</Question></QAPair>
  <QAPair pid="3"><Question qid="x1-3" qtype="information">What is fever ?</Question><Answer>
  </Answer></QAPair>
  <QAPair pid="4"><Question qid="x1-4" qtype="treatment">How to treat fever ?</Question><Answer>
        Rest and fluids.

                    See a doctor when it lasts.
  </Answer></QAPair>
</QAPairs>
</Document>
""",
    "bad/malformed.xml": b"<Document id='x2'><QAPairs><QAPair pid='1'><Question>q</Question></QAPairs></Document>",
    "bad/entities.xml": b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<Document id="x3"><QAPairs><QAPair pid="1"><Question>&lol2;</Question><Answer>a</Answer></QAPair></QAPairs></Document>
""",
    "bad/other.xml": b"<html><body>not MedQuAD</body></html>",
}


@pytest.fixture(scope="module")
def real_members() -> dict[str, bytes]:
    """The chosen members' bytes, read from the shipped archive (one pass over its stream)."""
    found = {}
    with tarfile.open(ARCHIVE, "r|*") as archive:
        for member in archive:
            if member.name in MEMBERS:
                found[member.name] = archive.extractfile(member).read()
    assert set(found) == set(MEMBERS)
    return found


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def rejects_of(out: Path) -> list[tuple[str, str, str]]:
    return [(r["file"], r["where"], r["reason"]) for r in read_jsonl(out.with_name("out.rejects.jsonl"))]


def test_medquad_is_registered_with_its_own_reader():
    assert load_sources()["medquad"] is medquad and medquad.KIND == "sft" and callable(medquad.read)


def test_an_archive_slice_gives_a_row_per_pair_and_every_reject_with_file_pair_and_reason(real_members, tmp_path):
    archive = make_archive(tmp_path / "slice.tar.gz", {**real_members, **HAND_MADE})
    manifest = convert(medquad, [str(archive)], tmp_path / "out.jsonl", OPENBIOLLM_SYSTEM_PROMPT, max_reject_rate=1)
    at = f"{archive}:"
    expected = [
        *[(at + MEMBERS[1], f"pair {n}", ADAM) for n in range(1, 6)],
        (at + MEMBERS[2], "pair 1", "no answer"),
        (at + MEMBERS[3], "whole file", "no question-answer pairs in the file"),
        (at + "bad/pairs.xml", "pair 1", "empty question"),
        (at + "bad/pairs.xml", "pair 2", "no answer"),
        (at + "bad/pairs.xml", "pair 3", "no answer"),
        (at + "bad/malformed.xml", "whole file", "malformed XML: mismatched tag: line 1, column 67"),
        (at + "bad/entities.xml", "whole file", "XML declares a DTD (refused by defusedxml)"),
        (at + "bad/other.xml", "whole file", "not a MedQuAD document: root element <html>"),
    ]
    assert rejects_of(tmp_path / "out.jsonl") == expected
    [record] = manifest["inputs"]
    assert (record["rows"], record["kept"], record["rejected"]) == (7 + 5 + 1 + 1 + 4 + 5 + 4 + 3, 7 + 4 + 5 + 1,
                                                                    len(expected))
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[-1]["messages"][1:] == [{"role": "user", "content": "How to treat fever ?"},
                                        {"role": "assistant",
                                         "content": "Rest and fluids.\n\nSee a doctor when it lasts."}]
    ninds = [row["messages"][1]["content"] for row in rows[7:11]]
    assert ninds[0] == "what is holmes-adie syndrome ?"  # the older layout is read too


def test_answers_lose_the_xml_indentation_but_keep_their_paragraphs(real_members, tmp_path):
    path = tmp_path / "0000001_1.xml"
    path.write_bytes(real_members[MEMBERS[0]])
    convert(medquad, [str(path)], tmp_path / "out.jsonl", None)
    first = read_jsonl(tmp_path / "out.jsonl")[0]["messages"]
    assert first[0] == {"role": "user", "content": "What is (are) Adult Acute Lymphoblastic Leukemia ?"}
    answer = first[1]["content"]
    assert answer.startswith("Key Points\n- Adult acute lymphoblastic leukemia (ALL) is a type of cancer")
    assert "treatment options.\n\nAdult acute lymphoblastic leukemia (ALL) is a type" in answer
    assert "\n\n\n" not in answer and all(line == line.strip() for line in answer.splitlines())


def test_a_folder_of_xml_files_is_read_recursively_and_names_each_file(real_members, tmp_path):
    for name in MEMBERS[:3]:
        (tmp_path / "xml" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "xml" / name).write_bytes(real_members[name])
    raws = list(medquad.read(str(tmp_path / "xml")))
    found = [(Path(r.file).relative_to(tmp_path / "xml").as_posix(), r.where) for r in raws]
    assert found == [(MEMBERS[1], f"pair {n}") for n in range(1, 6)] + [  # in path order: "10_..." < "1_..."
        (MEMBERS[0], f"pair {n}") for n in range(1, 8)] + [(MEMBERS[2], "pair 1")]
    raws = [r for r in raws if r.file.endswith(MEMBERS[0])]
    assert raws[0].record["focus"] == "Adult Acute Lymphoblastic Leukemia" and raws[0].record["qtype"] == "information"
    assert (raws[0].record["document"], raws[0].record["source"]) == ("0000001_1", "CancerGov")


@pytest.mark.parametrize("name, message", [
    ("missing.tar.xz", "no such file or folder"),
    ("notes.txt", "expected MedQuAD's .tar.xz/.tar.gz archive, a folder of XML files or one .xml file"),
    ("broken.tar.xz", "not a readable tar archive"),
])
def test_an_input_it_cannot_read_stops_in_one_line(tmp_path, name, message):
    if name != "missing.tar.xz":
        (tmp_path / name).write_bytes(b"not an archive")
    with pytest.raises(SystemExit, match=message) as stopped:
        list(medquad.read(str(tmp_path / name)))
    assert str(tmp_path / name) in str(stopped.value) and "\n" not in str(stopped.value)


def mixture(tmp_path: Path, archive: Path, **entry) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "version": 1, "validation_fraction": 0.0, "max_reject_rate": 0.1,
                                    "sft": [{"source": "medquad", "inputs": [str(archive)], **entry}]}))
    return path


def test_a_mixture_entry_may_allow_more_rejects_than_the_mixture(real_members, tmp_path):
    archive = make_archive(tmp_path / "adam.tar.gz", {name: real_members[name] for name in MEMBERS[:2]})
    with pytest.raises(SystemExit, match=r"medquad: more than 10% of rows rejected .*\n.*adam.tar.gz: 5 of 12 rows "
                                         r"rejected, most for 'no answer: upstream removed"):
        build(mixture(tmp_path, archive), tmp_path / "refused")
    manifest = build(mixture(tmp_path, archive, max_reject_rate=0.5), tmp_path / "out")
    assert manifest["kinds"]["sft"]["sources"][0]["kept"] == 7 == len(read_jsonl(tmp_path / "out/sft.jsonl"))
    with pytest.raises(SystemExit, match=r"sft entry 1: max_reject_rate is 1.5; expected a number, at least 0 and "
                                         r"at most 1"):
        build(mixture(tmp_path, archive, max_reject_rate=1.5), tmp_path / "bad")
