"""Inputs compressed with xz or gzip are read as the plain files are; a damaged one stops in one line."""

from __future__ import annotations

import gzip
import json
import lzma
import shutil

import pytest
from helpers import ROOT

from common.files import count_rows, format_suffix, open_text, plain_name
from data_prep.readers import read_rows
from eval import fetch
from eval.benchmarks import BenchmarkError

SAMPLE = ROOT / "data_prep/samples/alpaca.synthetic.jsonl"  # ten rows, four of them broken on purpose
KEYED = ROOT / "data_prep/samples/pubmedqa.synthetic.json"  # an object keyed by PMID


@pytest.mark.parametrize("name, plain, suffix", [
    ("dev.json.xz", "dev.json", ".json"), ("test.jsonl.gz", "test.jsonl", ".jsonl"),
    ("anatomy_test.csv", "anatomy_test.csv", ".csv"), ("medquad_raw_xml.tar.xz", "medquad_raw_xml.tar", ".tar"),
])
def test_the_format_suffix_sets_the_compression_suffix_aside(name, plain, suffix):
    assert (plain_name(name), format_suffix(f"some/folder/{name}")) == (plain, suffix)


@pytest.mark.parametrize("opener, suffix", [(lzma.open, ".xz"), (gzip.open, ".gz")])
def test_compressed_jsonl_and_json_give_the_rows_of_the_plain_files(tmp_path, opener, suffix):
    for plain in (SAMPLE, KEYED):
        packed = tmp_path / (plain.name + suffix)
        with opener(packed, "wb") as handle:
            handle.write(plain.read_bytes())
        read = [(r.where, r.record, r.error) for r in read_rows(str(packed))]
        assert read == [(r.where, r.record, r.error) for r in read_rows(str(plain))] and read
        assert all(r.file == str(packed) for r in read_rows(str(packed)))
        assert count_rows(packed) == count_rows(plain)
        with open_text(packed) as handle:
            assert handle.read() == plain.read_text(encoding="utf-8")


def test_a_truncated_xz_file_stops_in_one_line_naming_it(tmp_path):
    packed = tmp_path / "cut.jsonl.xz"
    packed.write_bytes(lzma.compress(SAMPLE.read_bytes())[:200])
    with pytest.raises(SystemExit, match=r"cut.jsonl.xz: cannot decompress \(EOFError") as stopped:
        list(read_rows(str(packed)))
    assert "\n" not in str(stopped.value)
    (tmp_path / "fake.json.gz").write_text(json.dumps({"not": "gzip"}))
    with pytest.raises(SystemExit, match=r"fake.json.gz: cannot decompress \(BadGzipFile"):
        list(read_rows(str(tmp_path / "fake.json.gz")))


def test_a_compressed_parquet_file_is_refused_with_the_reason(tmp_path):
    (tmp_path / "rows.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(SystemExit, match="a compressed Parquet file"):
        read_rows(str(tmp_path / "rows.parquet.gz"))


def test_raw_benchmark_files_are_found_by_their_published_name_compressed_or_not(tmp_path):
    (tmp_path / "medmcqa").mkdir()
    shutil.copy(ROOT / "data/published/eval/medmcqa/dev.json.xz", tmp_path / "medmcqa/dev.json.xz")
    assert fetch.find_raw(tmp_path, "medmcqa") == [str(tmp_path / "medmcqa/dev.json.xz")]
    (tmp_path / "dev.json").write_text("{}")
    with pytest.raises(BenchmarkError, match=r"2 files named dev.json .*dev.json, .*dev.json.xz\); keep one"):
        fetch.find_raw(tmp_path, "medmcqa")
