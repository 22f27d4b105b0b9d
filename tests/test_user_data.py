"""A user's own data, round two (#26): files and params nobody here tuned to give a sentence, not
a traceback; numbers are read one way; the record scanner agrees with Python's csv; decimal
commas; what is dropped or repeated is said. Each case has its file in tests/corpus."""

from __future__ import annotations

import copy
import io
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BLOBS_SCHEMA, ROOT, project_env, run

from flows import config
from steps import ingest, score

CORPUS = Path(__file__).parent / "corpus"


def stage(workdir: Path, *args: str):
    return run([sys.executable, "-m", "flows", *args], workdir, env=project_env(), check=False)


# 1. A column named like one of cairn's own.


def test_a_file_with_its_own_key_partition_and_problem_columns_is_read():
    data = (CORPUS / "own-columns.csv").read_bytes()
    table = ingest.from_csv(data, "own.csv", BLOBS_SCHEMA)
    assert table.schema.names == ["key", "partition", "kind", "f1", "f2", "problem"]
    assert table.column("key").to_pylist() == ["own.csv:2", "own.csv:3", "own.csv:4"]
    assert table.column("partition").to_pylist() == ["own.csv"] * 3
    assert table.column("problem").to_pylist() == [None] * 3  # the file's 'problem' is not cairn's
    assert table.column("f1").to_pylist() == [1.5, 3.5, 5.5]
    keyed = ingest.from_csv(data, "own.csv", BLOBS_SCHEMA | {"key": "key"})
    assert keyed.column("key").to_pylist() == ["A-17", "A-18", "A-19"]  # the file's key, as params say
    every = ingest.from_csv(data, "own.csv", BLOBS_SCHEMA | {"features": None})
    assert every.schema.names == ["key", "partition", "kind", "f1", "f2", "problem"]


def test_a_parquet_file_and_an_inbox_file_with_a_key_column_are_read():
    sink = io.BytesIO()
    pq.write_table(pa.table({"key": ["x", "y"], "f1": [1.0, 2.0], "f2": [3.0, 4.0], "kind": ["a", "b"]}), sink)
    table = ingest.from_parquet(sink.getvalue(), "own.parquet", BLOBS_SCHEMA)
    assert table.column("key").to_pylist() == ["own.parquet:1", "own.parquet:2"]
    chunks = list(score.read("own.csv", (CORPUS / "own-columns.csv").read_bytes(), score.unlabelled(BLOBS_SCHEMA)))
    assert [c.column("key").to_pylist() for c in chunks] == [["own.csv:2", "own.csv:3", "own.csv:4"]]


def test_a_feature_named_like_cairns_own_column_is_one_clear_line():
    with pytest.raises(ingest.IngestError) as err:
        ingest.from_csv(
            (CORPUS / "own-columns.csv").read_bytes(), "own.csv", BLOBS_SCHEMA | {"features": ["f1", "key"]}
        )
    assert str(err.value) == (
        "ingest: own.csv column 'key' is named by schema.features in params.yaml, but cairn keeps 'key' for its "
        "own (key, partition, problem); rename the column in the file"
    )


# 2. Params that name a column the data does not have.


@pytest.mark.parametrize(
    ("extra", "key", "column"),
    [
        ({"parse": {"rate": "percent"}}, "schema.parse", "rate"),
        ({"range": {"f1": [0, 1], "size": [0, 9]}}, "schema.range", "size"),
        ({"categorical": ["color"]}, "schema.categorical", "color"),
    ],
)
def test_a_params_column_the_file_lacks_is_named_at_ingest(extra, key, column):
    with pytest.raises(ingest.IngestError) as err:
        ingest.from_csv((CORPUS / "no-parsed-column.csv").read_bytes(), "p.csv", BLOBS_SCHEMA | extra)
    assert (
        str(err.value) == f"ingest: p.csv has no column '{column}' named by {key} in params.yaml; it has: f1, f2, kind"
    )


def test_params_naming_a_column_no_stage_keeps_fail_before_any_stage():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    wrong = copy.deepcopy(raw)
    wrong["workloads"]["loans"]["evaluate"]["slice"] = "state"
    with pytest.raises(config.BadInput) as err:
        config.parse(wrong)
    assert str(err.value).startswith(
        "params.yaml: workloads.loans.evaluate.slice names column 'state', which is neither the label nor in "
        "schema.features, so no stage keeps it; the label and features are: defaulted, fico_range, int_rate,"
    )
    config.parse(raw)  # the built-in params are fine


def test_a_slice_the_data_lacks_stops_ingest_with_one_line(workdir: Path):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["workloads"]["blobs"]["schema"]["features"] = None  # only the file says what columns there are
    params["workloads"]["blobs"]["evaluate"]["slice"] = "purpose"
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    raw = workdir / "raw"
    raw.mkdir()
    (raw / "p.csv").write_bytes((CORPUS / "no-parsed-column.csv").read_bytes())
    out = workdir / "data/blobs/ingest"
    result = stage(workdir, "ingest", "blobs", "--raw", str(raw), "--out", str(out))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: ingest: evaluate.slice in params.yaml names column 'purpose', which the data of '{raw}' does not "
        "have (or the schema does not keep); it has: partition, kind, f1, f2"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
