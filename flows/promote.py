"""promote flow and the model registry: the champion gate after publish, list and rollback.

The registry is a folder (``$CAIRN_REGISTRY``, default ``registry/``), one subfolder per
workload: ``index.json`` (versions, their status, metric, lineage, and which is champion) and
``v<N>/`` with the published files of each promoted version. It lives outside DVC's outputs
on purpose: promotion depends on what was promoted before, which no stage may depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from prefect import flow

from flows.common import InputError, load_params, log, read_table, report, require, write_json
from steps import models
from steps import promote as steps
from steps.publish import OUTPUTS, onnx_predict


def registry_root() -> Path:
    return Path(os.environ.get("CAIRN_REGISTRY", "registry"))


def read_index(workload: str) -> dict[str, Any]:
    path = registry_root() / workload / "index.json"
    return json.loads(path.read_text()) if path.exists() else {"workload": workload, "champion": None, "versions": []}


def champion(workload: str) -> tuple[int, Path] | None:
    """(version, folder) of ``workload``'s champion, or None when there is none yet."""
    version = read_index(workload)["champion"]
    return (version, registry_root() / workload / f"v{version}") if version else None


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


@flow(name="promote", flow_run_name="promote@{workload}", persist_result=False)
def promote(workload: str, split: Path, publish: Path) -> dict:
    """Register the model in ``publish`` as a new version of ``workload``: champion if it beats
    the current champion on the test holdout in ``split`` by ``promote.margin`` of
    ``promote.metric``, else a rejected challenger with the reason. A model already registered
    (same ONNX bytes) is not registered again."""
    params = load_params(workload)
    gate = params.get("promote") or {}
    metric, margin = gate.get("metric", "accuracy"), float(gate.get("margin", 0.0))
    digest = hashlib.sha256(require(publish / "model.onnx", "published model").read_bytes()).hexdigest()
    index = read_index(workload)
    for version in index["versions"]:
        if version["model_sha256"] == digest:
            log().info("promote@%s: this model is already v%d (%s)", workload, version["version"], version["status"])
            return {"version": version["version"], "status": version["status"], "new": False}

    test = read_table(split / "test.parquet")
    challenger = _score(publish, test, params["schema"], metric)
    current = champion(workload)
    champion_score = _score(current[1], test, params["schema"], metric) if current else None
    verdict = steps.judge(metric, challenger, champion_score, margin)
    version = steps.next_version(index)
    lineage = json.loads(require(publish / "lineage.json", "lineage").read_text())
    entry = {
        "version": version,
        "status": "champion" if verdict.promote else "rejected",
        "reason": verdict.reason,
        "metric": {metric: challenger},
        "model_sha256": digest,
        "git_revision": lineage["git_revision"],
        "lineage": {stage: record["outs"] for stage, record in lineage["stages"].items()},
    }
    target = registry_root() / workload / f"v{version}"
    shutil.rmtree(target, ignore_errors=True)
    if verdict.promote:
        shutil.copytree(publish, target)
        for old in index["versions"]:
            if old["status"] == "champion":
                old["status"] = "retired"
        index["champion"] = version
    else:  # keep the record of what was tried, not the weights
        target.mkdir(parents=True)
        for name in ("model_card.md", "lineage.json"):
            shutil.copyfile(publish / name, target / name)
    index["versions"].append(entry)
    write_json(registry_root() / workload / "index.json", index)
    (log().info if verdict.promote else log().warning)("promote@%s: v%d %s: %s", workload, version,
                                                       entry["status"], verdict.reason)  # fmt: skip
    summary = {"version": version, "status": entry["status"], "reason": verdict.reason, "new": True}
    report("promote", f"promote@{workload}", summary)
    return summary


def rollback(workload: str, to: int | None = None) -> dict:
    """Make version ``to`` (default: the champion before the current one) the champion again."""
    index = read_index(workload)
    promoted = [v for v in index["versions"] if v["status"] in ("champion", "retired")]
    if to is None:
        earlier = [v["version"] for v in promoted if v["version"] < (index["champion"] or 0)]
        if not earlier:
            raise InputError(f"registry: {workload} has no earlier champion to roll back to")
        to = max(earlier)
    chosen = next((v for v in promoted if v["version"] == to), None)
    if chosen is None:
        raise InputError(f"registry: {workload} has no promoted version v{to}; see `python -m flows registry list`")
    for v in index["versions"]:
        if v["status"] == "champion":
            v["status"] = "retired"
    chosen["status"] = "champion"
    index["champion"] = to
    write_json(registry_root() / workload / "index.json", index)
    return chosen


def listing(workload: str | None = None) -> str:
    """The registry as a table: workload, version, status, metric, reason."""
    root = registry_root()
    names = [workload] if workload else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    lines = [f"{'workload':<10} {'version':>7}  {'status':<9} {'metric':<22} reason"]
    for name in names:
        for v in read_index(name)["versions"]:
            ((metric, value),) = v["metric"].items()
            version, score = f"v{v['version']}", f"{metric} {value:.6g}"
            lines.append(f"{name:<10} {version:>7}  {v['status']:<9} {score:<22} {v['reason']}")
    return "\n".join(lines)
