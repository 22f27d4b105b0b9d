"""score@<workload>: new data in the inbox scored by the champion, file by file, with the
same reading and cleaning rules as ingest and clean (flows/score.py)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from conftest import blobs_csv, from_scratch, lock_entries, only_workloads, run


def repro(repo: Path) -> str:
    result = run(["dvc", "repro", "score@blobs"], repo)
    return result.stdout + result.stderr


def outputs(repo: Path) -> dict[str, bytes]:
    folder = repo / "data/blobs/score"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_new_rows_are_scored_bad_ones_quarantined_and_only_new_files_cost_anything(blobs_repo, tmp_path_factory):
    repo = blobs_repo  # after a first full run
    report = json.loads((repo / "data/blobs/score/report.json").read_text())
    sha = hashlib.sha256((repo / "data/blobs/publish/model.onnx").read_bytes()).hexdigest()
    assert report == {"partitions": 1, "rows_in": 20, "rows_scored": 19, "rows_quarantined": 1,
                      "quarantined_by_reason": {"missing value": 1}, "duplicate_rows_scored": 0, "model_version": 1,
                      "model_sha256": sha}  # fmt: skip
    scores = pq.read_table(repo / "data/blobs/score/partitions/new-1.parquet").to_pylist()
    truth = {f"new-1.csv:{i + 2}": line.split(",")[2] for i, line in enumerate(blobs_csv(20, 11).splitlines()[1:])}
    assert sum(s["predicted"] == truth[s["key"]] for s in scores) >= 17  # the inbox's own labels are ignored
    assert all(abs(sum(s["probabilities"]) - 1) < 1e-5 and s["model_sha256"] == sha for s in scores)
    (quarantined,) = pq.read_table(repo / "data/blobs/score/quarantine.parquet").to_pylist()
    assert quarantined["key"] == "new-1.csv:4" and "'f1'" in quarantined["reason"]

    # One more file: only it is scored; the bytes and lock are those of a from-scratch run.
    # The file the datum tests land too: the from-scratch reference is built once for all of them.
    (repo / "data/blobs/inbox/new-2.csv").write_text(blobs_csv(40, seed=3))
    log = repro(repo)
    assert "score: 1 inbox file(s) to score" in log and '"files_reused": 1' in log
    new = {"data/blobs/inbox/new-2.csv": (repo / "data/blobs/inbox/new-2.csv").read_text()}
    scratch = from_scratch(tmp_path_factory, only_workloads("blobs"), new, "score@blobs")
    assert outputs(repo) == outputs(scratch)
    ours, theirs = lock_entries(repo, scratch)
    assert ours == theirs and "score@blobs" in theirs

    # A challenger the champion gate rejects scores nothing: the champion (v1) still serves.
    # (Retrained by the pipeline, one process, not five stage processes of `dvc repro`: the two
    # leave the same lock, tests/test_dvc_repro.py.)
    def retrain(seed: int, margin: float) -> str:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["workloads"]["blobs"]["train"]["seed"] = seed
        params["workloads"]["blobs"]["promote"]["margin"] = margin
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = run([sys.executable, "-m", "flows", "pipeline", "blobs"], repo)
        return result.stdout + result.stderr

    before = outputs(repo)
    log = retrain(seed=8, margin=1.0)  # no model beats the champion by a whole accuracy point
    rejected = hashlib.sha256((repo / "data/blobs/publish/model.onnx").read_bytes()).hexdigest()
    assert rejected != sha and "v2 rejected" in log and "score: " not in log
    assert outputs(repo) == before
    assert run(["dvc", "status", "--json"], repo).stdout.strip() == "{}"

    # A new champion scores everything again, and every row says which model, by version and hash.
    log = retrain(seed=9, margin=-1.0)
    new_sha = hashlib.sha256((repo / "data/blobs/publish/model.onnx").read_bytes()).hexdigest()
    assert new_sha not in (sha, rejected) and "score: 2 inbox file(s) to score" in log
    for name in ("new-1", "new-2"):
        scored = pq.read_table(repo / f"data/blobs/score/partitions/{name}.parquet")
        assert set(scored["model_sha256"].to_pylist()) == {new_sha} and set(scored["model_version"].to_pylist()) == {3}
    assert json.loads((repo / "data/blobs/score/report.json").read_text())["model_version"] == 3


def test_an_inbox_file_without_the_models_columns_is_an_error_naming_it(blobs_repo: Path):
    repo = blobs_repo
    before = outputs(repo)
    (repo / "data/blobs/inbox/wrong.csv").write_text("a,b\n1,2\n")
    result = run(["dvc", "repro", "score@blobs"], repo, check=False)
    assert result.returncode != 0
    assert "error: ingest: wrong.csv has no column 'f1' named by schema.features in params.yaml" in result.stderr
    # Nothing half-written: the old output is kept, or gone as `dvc repro` removes it before a run.
    assert outputs(repo) in ({".gitignore": before[".gitignore"]}, before)
    assert not [p for p in (repo / "data/blobs").rglob(".*") if p.name != ".gitignore"]


def test_rows_to_score_have_no_label_rule():
    """A label that schema.parse or schema.categorical names (loans: 'defaulted') is absent from
    an inbox; scoring must not look for it (it did, found in a real loans export)."""
    from steps.score import unlabelled

    schema = {"label": "defaulted", "features": ["a"], "parse": {"defaulted": "category", "a": "percent"},
              "categorical": ["defaulted"]}  # fmt: skip
    assert unlabelled(schema) == {"label": None, "features": ["a"], "parse": {"a": "percent"}, "categorical": None}
