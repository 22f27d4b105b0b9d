"""A user's own files, read right the first time: the corpus in tests/corpus holds what real
exports carry (a byte-order mark, Windows text, other delimiters, quoted newlines, blank and
short lines, upper-case and compressed names), each with the exact figures it must give."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BLOBS_SCHEMA, project_env, run

from steps import ingest

CORPUS = Path(__file__).parent / "corpus"


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "keys", "blank", "malformed"),
    [
        ("bom.csv", "utf-8-sig", "comma", [2, 3, 4, 5], 0, 0),
        ("windows-1252.csv", "cp1252", "comma", [2, 3, 4, 5], 0, 0),
        ("semicolon.csv", "utf-8", "semicolon", [2, 3, 4, 5], 0, 0),
        ("tab.tsv", "utf-8", "tab", [2, 3, 4, 5], 0, 0),
        ("quoted-newline.csv", "utf-8", "comma", [2, 4], 0, 0),
        ("blank-lines.csv", "utf-8", "comma", [2, 4, 7], 3, 0),
        ("short-line.csv", "utf-8", "comma", [2, 4, 3], 0, 1),
    ],
)
def test_each_file_is_read_and_every_line_accounted_for(name, encoding, delimiter, keys, blank, malformed):
    info: dict = {}
    table = ingest.from_csv((CORPUS / name).read_bytes(), name, BLOBS_SCHEMA, info)
    assert table.schema.names == ["key", "partition", "kind", "f1", "f2", "problem"]
    assert table.column("key").to_pylist() == [f"{name}:{n}" for n in keys]  # the real file lines
    assert (info["encoding"], info["delimiter"]) == (encoding, delimiter)
    assert (info["blank_lines_skipped"], info["malformed_lines"], info["rows"]) == (blank, malformed, len(keys))
    physical = (CORPUS / name).read_bytes().count(b"\n")
    assert info["lines"] == physical  # header + rows (some span lines) + blank lines


def test_text_survives_its_encoding_and_quotes():
    cp1252 = ingest.from_csv((CORPUS / "windows-1252.csv").read_bytes(), "w.csv", BLOBS_SCHEMA)
    assert cp1252.column("kind").to_pylist()[-1] == "café"
    quoted = ingest.from_csv((CORPUS / "quoted-newline.csv").read_bytes(), "q.csv", BLOBS_SCHEMA)
    assert quoted.column("kind").to_pylist()[0] == "a\nsecond line"


def test_a_short_line_is_quarantined_with_its_line_number_not_fatal():
    table = ingest.from_csv((CORPUS / "short-line.csv").read_bytes(), "s.csv", BLOBS_SCHEMA)
    assert table.column("problem").to_pylist()[-1] == "malformed line 3: 1 fields, expected 3: '15.2'"


def test_a_bom_no_longer_hides_the_first_column():
    table = ingest.from_csv((CORPUS / "bom.csv").read_bytes(), "b.csv", BLOBS_SCHEMA)
    assert table.column("f1").to_pylist()[0] == 12.1


def test_text_in_a_numeric_column_says_how_to_declare_it():
    with pytest.raises(ingest.IngestError) as err:
        ingest.from_csv((CORPUS / "percent.csv").read_bytes(), "percent.csv", BLOBS_SCHEMA)
    assert str(err.value) == (
        "ingest: percent.csv column 'f2' has '20%' on line 2; expected a number. If the column holds text "
        "such as '12.5%', '$1,200' or '700-704', name it in schema.parse (kinds: number, percent, money, "
        "range_mid, category) or schema.categorical in params.yaml"
    )


def test_features_null_means_every_column_but_key_and_label():
    schema = BLOBS_SCHEMA | {"features": None}
    table = ingest.from_csv((CORPUS / "tab.tsv").read_bytes(), "t.tsv", schema)
    assert table.schema.names == ["key", "partition", "kind", "f2", "f1", "problem"]  # file order


def stage(workdir: Path, *args: str):
    return run([sys.executable, "-m", "flows", *args], workdir, env=project_env(), check=False)


def test_a_folder_of_mixed_files_is_read_and_what_is_skipped_is_named(workdir: Path):
    raw = workdir / "raw"
    raw.mkdir()
    for name in ("UPPER.CSV", "zipped.csv.gz", "tab.tsv", "blank-lines.csv", "notes.json"):
        shutil.copy(CORPUS / name, raw / name)
    out = workdir / "data/blobs/ingest"
    result = stage(workdir, "ingest", "blobs", "--raw", str(raw), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"skipped {raw / 'notes.json'}: not a partition file" in result.stderr
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "UPPER.parquet", "blank-lines.parquet", "tab.parquet", "zipped.parquet"
    ]  # fmt: skip
    read = json.loads((out / "read.json").read_text())
    assert read["skipped"] == [(raw / "notes.json").as_posix()]
    assert read["partitions"]["blank-lines"]["blank_lines_skipped"] == 3

    clean = workdir / "data/blobs/clean"
    result = stage(workdir, "clean", "blobs", "--ingested", str(out), "--out", str(clean))
    assert result.returncode == 0, result.stderr
    report = json.loads((clean / "report.json").read_text())
    assert report["rows_in"] == 4 + 4 + 4 + 3 == report["rows_kept"] + report["rows_quarantined"]
    assert report["blank_lines_skipped"] == 3
    assert report["duplicate_rows_kept"] == 3 + 4 + 4  # the four rows of UPPER.CSV, again in the others


def test_integer_labels_in_parquet_beside_text_labels_in_csv(workdir: Path):
    raw = workdir / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("f1,f2,kind\n1,2,0\n3,4,1\n")
    sink = io.BytesIO()
    pq.write_table(pa.table({"f1": [5.0], "f2": [6.0], "kind": pa.array([1], pa.int64())}), sink)
    (raw / "b.parquet").write_bytes(sink.getvalue())
    out = workdir / "data/blobs/ingest"
    result = stage(workdir, "ingest", "blobs", "--raw", str(raw), "--out", str(out))
    assert result.returncode == 0, result.stderr
    labels = pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("*.parquet"))).column("kind")
    assert labels.to_pylist() == ["0", "1", "1"]


def test_predictions_name_each_row_give_probabilities_and_cannot_run_in_a_spreadsheet():
    from steps.evaluate import predictions_csv

    text = predictions_csv(
        np.array([0, 1]),
        np.array([1, 1]),
        ["=cmd|' /C calc'!A0", "b"],
        ["p.csv:2", "@sum"],
        np.array([[0.3, 0.7], [0.1, 0.9]]),
    )
    assert text.splitlines() == [
        "key,actual,predicted,p_=cmd|' /C calc'!A0,p_b",
        "p.csv:2,'=cmd|' /C calc'!A0,b,0.3,0.7",
        "'@sum,b,b,0.1,0.9",
    ]


def test_a_file_without_line_breaks_names_the_long_line():
    data = b"f1,f2,kind\n1,2,a\n" + b"1" * 3_000_000
    with pytest.raises(ingest.IngestError) as err:
        ingest.from_csv(data, "a.csv", BLOBS_SCHEMA)
    assert str(err.value) == (
        "ingest: a.csv line 3 is 3.0 MB long; expected one record per line (is it a CSV file with line breaks?)"
    )


def test_a_label_with_one_class_is_a_clear_error():
    from conftest import TINY_MODEL, TINY_TRAIN

    from steps import train
    from steps.models import BadInput

    table = ingest.from_csv(b"f1,f2,kind\n" + b"".join(b"%d,%d,a\n" % (i, i) for i in range(20)), "a.csv", BLOBS_SCHEMA)
    with pytest.raises(BadInput) as err:
        train.train(table, table, BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN)
    assert str(err.value) == (
        "train: the label 'kind' has 1 class(es) in the train rows ('a'); a classifier needs at least two"
    )
