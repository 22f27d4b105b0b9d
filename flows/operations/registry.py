"""promote flow and the model registry: the champion gate after publish, list and rollback.

The registry is a folder (``$CAIRN_REGISTRY``, default ``registry/``), one subfolder per
workload: ``index.json`` (versions, their status, metric, holdout, lineage, which is champion,
and a dated log of every promotion, rejection and rollback), ``v<N>/`` with the published
files of each promoted version, and ``champion``, a link to the ``v<N>/`` being served. It
lives outside DVC's outputs on purpose: promotion depends on what was promoted before, which no
stage may depend on. ``data/<workload>/publish/`` is the latest candidate (a DVC output);
``registry/<workload>/champion/`` is what serves.

Every change takes a lock on the workload's folder, so clones sharing one registry never lose
a registration, and the index is written atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.common import (
    InputError,
    artifact_key,
    check_name,
    load_params,
    log,
    read_table,
    report,
    require,
    stage_flow,
    write_json,
)
from steps import models
from steps import promote as steps
from steps.publish import OUTPUTS, onnx_predict


def registry_root() -> Path:
    return Path(os.environ.get("CAIRN_REGISTRY", "registry"))


def folder(workload: str) -> Path:
    """The registry folder of ``workload`` (a checked name: no path can climb out of the registry)."""
    return registry_root() / check_name(workload, "registry: workload")


def read_index(workload: str) -> dict[str, Any]:
    """The index of ``workload`` (an empty one before its first model); InputError when unreadable."""
    path = folder(workload) / "index.json"
    if not path.exists():
        return {"workload": workload, "champion": None, "versions": [], "events": []}
    try:
        index = json.loads(path.read_text())
        if not isinstance(index.get("versions"), list):
            raise ValueError("no 'versions' list")
    except (ValueError, AttributeError) as err:
        raise InputError(
            f"registry: {path} is unreadable ({err}); restore it from a backup, or move the folder "
            "away to start a new history"
        ) from None
    index.setdefault("events", [])
    return index


@contextlib.contextmanager
def locked(workload: str) -> Iterator[dict[str, Any]]:
    """The index of ``workload``, locked against other processes (other clones sharing the
    registry too) until the block ends; written back atomically when the block succeeds."""
    root = folder(workload)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other change is done
        index = read_index(workload)
        yield index
        write_json(root / "index.json", index)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _serve(workload: str, version: int) -> None:
    """Point ``champion`` at ``v<version>``: swapped in one rename, never missing or half-made."""
    link, tmp = folder(workload) / "champion", folder(workload) / ".champion.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"v{version}", target_is_directory=True)
    os.replace(tmp, link)


def champion(workload: str) -> tuple[int, Path] | None:
    """(version, folder) of ``workload``'s champion, or None when there is none yet."""
    version = read_index(workload)["champion"]
    return (version, folder(workload) / f"v{version}") if version else None


def holdout(test_file: Path) -> dict[str, Any]:
    """What a score was measured on: the test set's rows and content hash."""
    import pyarrow.parquet as pq

    return {"rows": pq.read_metadata(test_file).num_rows,
            "sha256": hashlib.sha256(test_file.read_bytes()).hexdigest()}  # fmt: skip


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
def promote(workload: str, split: Path, publish: Path) -> dict:
    """Register the model in ``publish`` as a new version of ``workload``: champion if it beats
    the current champion on the test holdout in ``split`` by ``promote.margin`` of
    ``promote.metric``, else a rejected challenger with the reason. A model already registered
    (same ONNX bytes) is not registered again."""
    params = load_params(workload)
    gate = params.get("promote") or {}
    metric, margin = gate.get("metric", "accuracy"), float(gate.get("margin", 0.0))
    digest = hashlib.sha256(require(publish / "model.onnx", "published model").read_bytes()).hexdigest()
    with locked(workload) as index:
        for version in index["versions"]:
            if version["model_sha256"] == digest:
                log().info("promote@%s: this model is already v%d (%s)", workload, version["version"],
                           version["status"])  # fmt: skip
                return {"version": version["version"], "status": version["status"], "new": False}

        # Challenger and champion are scored here, on this one holdout: a score recorded on
        # another test set is never compared with.
        test_file = require(split / "test.parquet", "test holdout")
        test = read_table(test_file)
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
            "registered_at": now(),
            "metric": {metric: challenger},
            "holdout": holdout(test_file),
            "champion_then": None if current is None else {"version": current[0], metric: champion_score},
            "model_sha256": digest,
            "git_revision": lineage["git_revision"],
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
            _serve(workload, version)
        else:  # keep the record of what was tried, not the weights
            target.mkdir(parents=True)
            for name in ("model_card.md", "lineage.json"):
                shutil.copyfile(publish / name, target / name)
        index["versions"].append(entry)
        index["events"].append({"at": entry["registered_at"], "event": "promoted" if verdict.promote else "rejected",
                                "version": version, "reason": verdict.reason})  # fmt: skip
    (log().info if verdict.promote else log().warning)("promote@%s: v%d %s: %s", workload, version,
                                                       entry["status"], verdict.reason)  # fmt: skip
    summary = {"version": version, "status": entry["status"], "reason": verdict.reason, "new": True}
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


def rollback(workload: str, to: int | None = None) -> dict:
    """Make version ``to`` (default: the champion before the current one) the champion again:
    ``champion`` then serves it, and the index logs when and from which version."""
    if to is not None and (not isinstance(to, int) or to < 1):
        raise InputError(f"registry: --to {to!r} is not a version number (1, 2, ...)")
    if not (folder(workload) / "index.json").exists():
        raise InputError(f"registry: {workload} has no registered models; see `python -m flows registry list`")
    with locked(workload) as index:
        promoted = [v for v in index["versions"] if v["status"] in ("champion", "retired")]
        if to is None:
            earlier = [v["version"] for v in promoted if v["version"] < (index["champion"] or 0)]
            if not earlier:
                raise InputError(f"registry: {workload} has no earlier champion to roll back to")
            to = max(earlier)
        chosen = next((v for v in promoted if v["version"] == to), None)
        if chosen is None:
            raise InputError(f"registry: {workload} has no promoted version v{to}; see `python -m flows registry list`")
        before = index["champion"]
        for v in index["versions"]:
            if v["status"] == "champion":
                v["status"] = "retired"
        chosen["status"] = "champion"
        index["champion"] = to
        _serve(workload, to)
        index["events"].append(
            {"at": now(), "event": "rollback", "version": to, "reason": f"rolled back from v{before}"}
        )
    return chosen


def listing(workload: str | None = None) -> str:
    """The registry as a table: workload, version, status (champion = serving), when, metric on
    which holdout, reason; then each workload's dated log of changes."""
    root = registry_root()
    names = [workload] if workload else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    lines = [f"{'workload':<10} {'version':>7}  {'status':<9} {'registered':<20} {'metric':<22} {'holdout':<9} reason"]
    events = []
    for name in names:
        index = read_index(name)
        for v in index["versions"]:
            ((metric, value),) = v["metric"].items()
            version, score = f"v{v['version']}", f"{metric} {value:.6g}"
            status = "champion" if v["status"] == "champion" else v["status"]
            rows = f"{v['holdout']['rows']} rows" if "holdout" in v else "?"
            lines.append(f"{name:<10} {version:>7}  {status:<9} {v.get('registered_at', '?'):<20} {score:<22} "
                         f"{rows:<9} {v['reason']}")  # fmt: skip
        events += [f"{e['at']}  {name} v{e['version']} {e['event']}: {e['reason']}" for e in index["events"]]
        if index["champion"]:
            events.append(f"serving: {name} v{index['champion']} ({folder(name) / 'champion'})")
    return "\n".join(lines + ([""] + events if events else []))
