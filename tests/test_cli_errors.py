"""Bad input through the real command line: one clear line, a non-zero exit, no half output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import blobs_csv, error_line, project_env, run, tiny_params


def ingest(workdir: Path, raw: Path):
    out = workdir / "data/blobs/ingest"
    result = run(
        [sys.executable, "-m", "flows", "ingest", "blobs", "--raw", str(raw), "--out", str(out)],
        workdir,
        env=project_env(),
        check=False,
    )
    return result, out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "ingest: raw data '{raw}' does not exist"),
        ("", "ingest: {name} is empty; expected a header line"),
        (
            "f1,f2\n1,2\n",
            "ingest: {name} has no column 'kind' named by schema.label in params.yaml; it has: f1, f2",
        ),
        (
            blobs_csv(10, 0, bad={7: "twelve"}),
            "ingest: {name} column 'f1' has 'twelve' on line 8; expected a number",
        ),
    ],
    ids=["missing file", "empty file", "no label column", "non-numeric feature"],
)
def test_bad_raw_file(workdir: Path, content, expected):
    raw = workdir / "bad.csv"
    if content is not None:
        raw.write_text(content)
    result, out = ingest(workdir, raw)
    assert result.returncode == 1
    assert expected.format(raw=raw, name="bad.csv") in error_line(result)
    assert not out.exists()  # nothing half-written


def test_nan_features_beyond_the_allowed_share_fail_clean_with_the_quarantine_to_look_at(workdir: Path):
    raw = workdir / "nan.csv"
    raw.write_text(blobs_csv(20, 0, bad={i: "NaN" for i in (3, 4, 5)}))
    result, ingested = ingest(workdir, raw)
    assert result.returncode == 0, result.stderr
    out = workdir / "data/blobs/clean"
    result = run(
        [sys.executable, "-m", "flows", "clean", "blobs", "--ingested", str(ingested), "--out", str(out)],
        workdir,
        check=False,
    )
    assert result.returncode == 1
    assert (
        "clean: 3 of 20 rows (15.0%) are bad, more than max_quarantined 10.0%; first: row 'nan.csv:4': "
        "missing or NaN value in column 'f1'" in error_line(result)
    )
    # The quarantine and the counts are there to look at; no clean rows for a later stage.
    assert pq.read_table(out / "quarantine.parquet").num_rows == 3
    assert json.loads((out / "report.json").read_text())["quarantined_by_reason"] == {"missing value": 3}
    assert not (out / "rows").exists()


def test_an_old_output_survives_a_failed_run(workdir: Path):
    raw = workdir / "good.csv"
    raw.write_text(blobs_csv(10, 0))
    result, out = ingest(workdir, raw)
    assert result.returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw.write_text("f1,f2\n1,2\n")
    result, out = ingest(workdir, raw)
    assert result.returncode == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == ["ingest"]  # no temp folders left behind


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", "ten", "workloads.blobs.train.epochs is 'ten'; input should be a valid integer"),
        ("train", "epochs", 0, "workloads.blobs.train.epochs is 0; input should be greater than or equal to 1"),
        ("train", "lr", -1, "workloads.blobs.train.lr is -1; input should be greater than or equal to 0"),
        ("train", "batch_size", 0, "workloads.blobs.train: batch_size is 0; with optimizer 'adam' it must be ≥ 1"),
        ("clean", "max_quarantined", "lots",
         "workloads.blobs.clean.max_quarantined is 'lots'; input should be a valid number"),
        ("train", "optimiser", "sgd", "workloads.blobs.train.optimiser is not a setting cairn knows; train has: seed,"),
    ],
)  # fmt: skip
def test_wrong_params_are_one_line_naming_key_value_and_what_is_allowed(workdir: Path, section, key, value, expected):
    params = tiny_params()
    params["workloads"]["blobs"][section][key] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    raw = workdir / "good.csv"
    raw.write_text(blobs_csv(10, 0))
    result, out = ingest(workdir, raw)
    assert result.returncode == 1
    assert error_line(result).startswith("error: params.yaml: " + expected)
    assert not out.exists()


def test_params_that_are_not_yaml_are_one_line_saying_where(workdir: Path):
    text = yaml.safe_dump(tiny_params())
    (workdir / "params.yaml").write_text(text + "workloads:\n  iris: [\n")  # a list never closed
    raw = workdir / "good.csv"
    raw.write_text(blobs_csv(10, 0))
    result, out = ingest(workdir, raw)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = len(text.splitlines()) + 3
    assert error_line(result).startswith("error: params.yaml is not valid YAML: ")  # then libyaml's words
    assert f"(params.yaml, line {line}, column 1)" in error_line(result)
    assert not out.exists()


def test_every_command_has_help_and_a_usage_error_is_one_line_with_exit_2(capsys):
    from flows.cli import main, parser

    commands = parser()._subparsers._group_actions[0].choices
    assert {"pipeline", "plan", "registry", "prune", "recover", "deployments", "server-env", "train"} <= set(commands)
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in commands)
    for name in commands:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0, name
        assert f"usage: python -m flows {name}" in capsys.readouterr().out
    assert main(["--help-me"]) == 2
    assert main(["server-env", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: python -m flows") and "usage:" in err
