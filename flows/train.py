"""train flow: train/val sets -> model arrays (safetensors), spec (JSON), loss history (CSV)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from prefect import flow
from tqdm import tqdm

from flows.common import load_params, log, read_table, report, require, run_record, write_atomic
from steps import models
from steps import train as steps
from steps.models.torchnet import pick_device

CHECKPOINTS = Path(".cairn") / "checkpoints"


@flow(name="train", flow_run_name="train@{workload}", persist_result=False)
def train(workload: str, split: Path, out: Path) -> dict:
    """Write ``out``/model.safetensors, model.json and history.csv; checkpoint every epoch."""
    params = load_params(workload)
    # Same inputs, same bytes: deterministic kernels (CUDA needs the workspace setting too).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    device = pick_device(params["train"]["device"])
    logger = log()
    logger.info(
        "train@%s: %s on %s (%d CPU threads)", workload, params["model"]["name"], device, torch.get_num_threads()
    )

    checkpoint = CHECKPOINTS / workload / "last.safetensors"
    bar = tqdm(total=params["train"]["epochs"], desc=f"train@{workload}", unit="epoch", disable=None)
    every = max(1, params["train"]["epochs"] // 20)  # about 20 log lines per run

    def on_epoch(epoch: models.Epoch, fitted: models.Fitted) -> None:
        write_atomic(checkpoint, models.to_bytes(fitted, {"epoch": str(epoch.epoch)}))
        bar.update()
        bar.set_postfix(val_loss=f"{epoch.val_loss:.4f}")
        (logger.info if epoch.epoch % every == 0 or epoch.epoch == 1 else logger.debug)(
            "epoch %d: train_loss %.4f val_loss %.4f%s (%.2fs)",
            epoch.epoch, epoch.train_loss, epoch.val_loss,
            "" if epoch.val_accuracy is None else f" val_accuracy {epoch.val_accuracy:.4f}", epoch.seconds,
        )  # fmt: skip

    start, source = _warm_start(workload) if params["train"].get("warm_start") else (None, None)
    try:
        fitted = steps.train(
            read_table(split / "train.parquet"),
            read_table(split / "val.parquet"),
            params["schema"],
            params["model"],
            params["train"],
            on_epoch,
            start,
        )
    finally:
        bar.close()
    if start is not None:
        fitted.spec["warm_start"] |= source  # provenance: which weights it started from
        logger.info("train@%s: warm start from champion v%d: %s", workload, source["champion"],
                    fitted.spec["warm_start"]["reason"])  # fmt: skip
    write_atomic(out / "model.safetensors", models.to_bytes(fitted))
    write_atomic(out / "model.json", models.spec_json(fitted.spec))
    write_atomic(out / "history.csv", steps.history_csv(fitted.history))
    summary: dict = {"epochs": len(fitted.history), "best_epoch": fitted.best_epoch}
    if "warm_start" in fitted.spec:
        summary["warm_start"] = fitted.spec["warm_start"]["used"]
    if fitted.history:
        best = fitted.history[fitted.best_epoch - 1]
        summary |= {"val_loss": round(best.val_loss, 6)}
        if best.val_accuracy is not None:
            summary["val_accuracy"] = round(best.val_accuracy, 6)
    record = {"device": str(device), "epoch_seconds": [e.seconds for e in fitted.history]}
    run_record(workload, "train", summary | record)
    report("train", f"train@{workload}", summary)
    return summary


def _warm_start(workload: str) -> tuple[models.Fitted | None, dict | None]:
    """The registry's champion of ``workload`` to start from, and where it came from; (None,
    None) when there is no champion yet. The registry is outside DVC's DAG: model.json (and so
    the lineage) names the champion version and the hash of its weights instead."""
    import hashlib
    import json

    from flows.promote import champion

    current = champion(workload)
    if current is None:
        log().info("train@%s: warm_start is on but there is no champion yet; training from scratch", workload)
        return None, None
    version, folder = current
    weights = require(folder / "model.safetensors", "champion weights").read_bytes()
    start = models.from_bytes(json.loads(require(folder / "model.json", "champion spec").read_text()), weights)
    return start, {"champion": version, "weights_sha256": hashlib.sha256(weights).hexdigest()}
