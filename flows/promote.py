"""promote flow: the champion gate, the stage after publish.

It registers the model publish made as a new version in the registry
(flows/registry.py): champion if it beats the current champion on this run's test
holdout by ``promote.margin`` of ``promote.metric``, else a rejected challenger with the
reason. Then it copies the champion, whichever it is, into ``data/<workload>/promote/``: the
model that serves, and the one DVC's later stages (score) read. A rejected challenger changes
nothing there, so nothing downstream runs again for it.

That output depends on the registry's history, not only on the stage's deps: dvc.yaml marks it
``persist``, which keeps DVC from ever restoring it from its run-cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from flows import config
from flows.registry import champion, folder, locked, now, point_champion, read_index, serve_to
from flows.storage.tables import parquet_files, read_table, require
from flows.tracking import artifact_key, git_revision, log, report, stage_flow
from steps import models
from steps import promote as steps
from steps.publish import OUTPUTS, onnx_predict


def weights_digest(model_dir: Path) -> str:
    """What identifies a trained model: its weights and spec (model.safetensors, model.json).
    Not the ONNX bytes: their metadata (the lineage's hash) changes with an upstream data edit
    that leaves the weights as they were, which is not a new model."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "model.json"):
        digest.update(require(model_dir / name, "published model").read_bytes())
    return digest.hexdigest()


def registered_weights(workload: str, entry: dict[str, Any]) -> str | None:
    """The weights digest of a registered version: recorded, or (an entry from before it was)
    taken from the files kept of a promoted one; None for a rejected one of then."""
    if "weights_sha256" in entry:
        return entry["weights_sha256"]
    kept = folder(workload) / f"v{entry['version']}"
    return weights_digest(kept) if (kept / "model.safetensors").exists() else None


def holdout(test: Path) -> dict[str, Any]:
    """What a score was measured on: the test set's rows and content hash (over its files' names
    and bytes, one file per partition)."""
    import pyarrow.parquet as pq

    files, digest = parquet_files(test), hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"rows": sum(pq.read_metadata(f).num_rows for f in files), "sha256": digest.hexdigest()}


def _score(model_dir: Path, test, schema: dict, metric: str) -> float:
    """``metric`` of the ONNX model in ``model_dir`` on the test holdout."""
    spec = json.loads(require(model_dir / "model.json", "model spec").read_text())
    x = models.features(test, schema, spec["encoding"])
    task = spec["task"]
    prediction = onnx_predict(require(model_dir / "model.onnx", "ONNX model").read_bytes(), x, OUTPUTS[task])
    if task == "classification":
        y = models.labels(test, schema["label"], spec["classes"])
    elif task == "regression":
        y = test.column(schema["label"]).to_numpy(zero_copy_only=False).astype(float)
    else:
        y = x
    return steps.score(task, metric, y, prediction, spec["classes"], spec.get("threshold"))


@stage_flow("promote")
def promote(workload: str, split: Path, publish: Path, out: Path) -> dict:
    """Register the model in ``publish`` as a new version of ``workload``: champion if it beats
    the current champion on the test holdout in ``split`` by ``promote.margin`` of
    ``promote.metric``, else a rejected challenger with the reason. A model already registered
    (same weights and spec, or same ONNX bytes) is not registered again. Then ``out`` gets the champion's files and
    champion.json (its version, model sha256 and metric)."""
    params = config.workload(workload)
    gate = params.promote
    metric, margin = gate.metric, gate.margin
    digest = hashlib.sha256(require(publish / "model.onnx", "published model").read_bytes()).hexdigest()
    weights = weights_digest(publish)
    with locked(workload) as index:
        for version in index["versions"]:
            if digest == version["model_sha256"] or weights == registered_weights(workload, version):
                log().info("promote@%s: this model is already v%d (%s)", workload, version["version"],
                           version["status"])  # fmt: skip
                served = serve_to(workload, out)
                return {"version": version["version"], "status": version["status"], "new": False,
                        "serving": served["version"]}  # fmt: skip

        # Challenger and champion are scored here, on this one holdout: a score recorded on
        # another test set is never compared with.
        test_files = split / "test"
        test = read_table(test_files)
        challenger = _score(publish, test, params.settings("schema"), metric)
        current = champion(workload)
        champion_score = _score(current[1], test, params.settings("schema"), metric) if current else None
        verdict = steps.judge(metric, challenger, champion_score, margin)
        version = steps.next_version(index)
        lineage = json.loads(require(publish / "lineage.json", "lineage").read_text())
        entry = {
            "version": version,
            "status": "champion" if verdict.promote else "rejected",
            "reason": verdict.reason,
            "registered_at": now(),
            "metric": {metric: challenger},
            "holdout": holdout(test_files),
            "champion_then": None if current is None else {"version": current[0], metric: champion_score},
            "model_sha256": digest,
            "weights_sha256": weights,
            "git_revision": git_revision(),  # what the checkout was at: a record, not a DVC output
            "lineage": {stage: record["outs"] for stage, record in lineage["stages"].items()},
        }
        target = folder(workload) / f"v{version}"
        shutil.rmtree(target, ignore_errors=True)
        if verdict.promote:
            shutil.copytree(publish, target)
            for old in index["versions"]:
                if old["status"] == "champion":
                    old["status"] = "retired"
            index["champion"] = version
            point_champion(workload, version)
        else:  # keep the record of what was tried, not the weights
            target.mkdir(parents=True)
            for name in ("model_card.md", "lineage.json"):
                shutil.copyfile(publish / name, target / name)
        index["versions"].append(entry)
        index["events"].append({"at": entry["registered_at"], "event": "promoted" if verdict.promote else "rejected",
                                "version": version, "reason": verdict.reason})  # fmt: skip
    (log().info if verdict.promote else log().warning)("promote@%s: v%d %s: %s", workload, version,
                                                       entry["status"], verdict.reason)  # fmt: skip
    served = serve_to(workload, out)
    summary = {"version": version, "status": entry["status"], "reason": verdict.reason, "new": True,
               "serving": served["version"]}  # fmt: skip
    report(f"promote-{workload}", f"promote@{workload}", summary)
    history_artifact(workload)
    return summary


def history_rows(workload: str) -> list[dict]:
    """The registry's history of ``workload``, newest first, one row per version: what answers
    "is this model better than last week's" in the Prefect UI."""
    rows = []
    for v in reversed(read_index(workload)["versions"]):
        ((metric, value),) = v["metric"].items()
        raw = next(iter(v.get("lineage", {}).get("ingest", {}).values()), None)
        rows.append({
            "version": f"v{v['version']}",
            "registered": v.get("registered_at", "?"),
            "status": v["status"],
            metric: round(value, 6),
            "champion then": "-" if not v.get("champion_then") else f"v{v['champion_then']['version']}: "
                                                                  f"{v['champion_then'][metric]:.6g}",
            "reason": v["reason"],
            "data (ingest md5)": raw or "?",
            "git revision": v.get("git_revision", "?")[:12],
            "model sha256": v["model_sha256"][:12],
        })  # fmt: skip
    return rows


def history_artifact(workload: str) -> None:
    """The history as a table artifact 'registry-<workload>' (its versions are the UI's history)."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_table_artifact(table=history_rows(workload), key=artifact_key("registry", workload),
                              description=f"{workload}: every registered model, newest first")  # fmt: skip
