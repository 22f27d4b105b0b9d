"""train flow: train/val sets -> model arrays (safetensors), spec (JSON), loss history (CSV)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm import tqdm

from flows import config
from flows.storage.files import remove_leftovers, write_atomic
from flows.storage.tables import parquet_files, read_table, require
from flows.tracking import log, report, run_record, stage_flow
from steps import models
from steps import train as steps
from steps.models import torchnet
from steps.models.torchnet import pick_device

CHECKPOINTS = Path(".cairn") / "checkpoints"


@stage_flow("train")
def train(workload: str, split: Path, out: Path) -> dict:
    """Write ``out``/model.safetensors, model.json and history.csv; checkpoint every epoch."""
    params = config.workload(workload)
    # Same inputs, same bytes: deterministic kernels (CUDA needs the workspace setting too).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    device = pick_device(params.train.device)
    # The kernels decide the bytes: the instruction set (flows/__init__.py) and the thread count
    # that splits reductions. Both go into model.json; on CUDA the GPU model is the boundary.
    torch.set_num_threads(params.train.threads)
    kernels = {"device": device.type, "cpu_isa": torch.backends.cpu.get_cpu_capability(),
               "threads": torch.get_num_threads()}  # fmt: skip
    logger = log()
    logger.info("train@%s: %s on %s (%s kernels, %d CPU threads)", workload, params.model.name, device,
                kernels["cpu_isa"], kernels["threads"])  # fmt: skip

    start, source = _warm_start(workload) if params.train.warm_start else (None, None)
    checkpoint = CHECKPOINTS / workload / "last.pt"
    remove_leftovers(checkpoint)  # temp files of a checkpoint write that was killed
    fingerprint = _fingerprint(split, params, source)
    resume = _resumable(checkpoint, fingerprint, workload)
    bar = tqdm(total=params.train.epochs, initial=len(resume["history"]) if resume else 0,
               desc=f"train@{workload}", unit="epoch", disable=None)  # fmt: skip
    every = max(1, params.train.epochs // 20)  # about 20 log lines per run

    def on_epoch(epoch: models.Epoch, fitted: models.Fitted) -> None:
        if fitted.state is not None:  # a model that can go on after an interruption
            write_atomic(checkpoint, seal(torchnet.state_to_bytes(fitted.state | {"fingerprint": fingerprint})))
        bar.update()
        bar.set_postfix(val_loss=f"{epoch.val_loss:.4f}")
        (logger.info if epoch.epoch % every == 0 or epoch.epoch == 1 else logger.debug)(
            "epoch %d: train_loss %.4f val_loss %.4f%s (%.2fs)",
            epoch.epoch, epoch.train_loss, epoch.val_loss,
            "" if epoch.val_accuracy is None else f" val_accuracy {epoch.val_accuracy:.4f}", epoch.seconds,
        )  # fmt: skip

    try:
        fitted = steps.train(
            read_table(split / "train"),
            read_table(split / "val"),
            params.settings("schema"),
            params.settings("model"),
            params.settings("train"),
            on_epoch,
            start,
            resume,
        )
    finally:
        bar.close()
    if start is not None:
        fitted.spec["warm_start"] |= source  # provenance: which weights it started from
        verb = "started from" if fitted.spec["warm_start"]["used"] else "did not start from"
        logger.info("train@%s: %s champion v%d's weights (%s)", workload, verb, source["champion"],
                    fitted.spec["warm_start"]["reason"])  # fmt: skip
    fitted.spec["kernels"] = kernels
    for warning in fitted.spec.get("warnings", []):  # said by the model (logistic: separable rows)
        logger.warning("train@%s: %s", workload, warning)
    write_atomic(out / "model.safetensors", models.to_bytes(fitted))
    write_atomic(out / "model.json", models.spec_json(fitted.spec))
    write_atomic(out / "history.csv", steps.history_csv(fitted.history))
    checkpoint.unlink(missing_ok=True)  # done: nothing to resume
    summary: dict = {"epochs": len(fitted.history), "best_epoch": fitted.best_epoch}
    if "warm_start" in fitted.spec:
        summary["warm_start"] = fitted.spec["warm_start"]["used"]
    if fitted.spec.get("warnings"):
        summary["warnings"] = fitted.spec["warnings"]
    if fitted.history:
        best = fitted.history[fitted.best_epoch - 1]
        summary |= {"val_loss": round(best.val_loss, 6)}
        if best.val_accuracy is not None:
            summary["val_accuracy"] = round(best.val_accuracy, 6)
    record = {"device": str(device), "epoch_seconds": [e.seconds for e in fitted.history],
              "resumed_after_epoch": len(resume["history"]) if resume else None}  # fmt: skip
    run_record(workload, "train", summary | record)
    report(f"train-{workload}", f"train@{workload}", summary)
    return summary


def _warm_start(workload: str) -> tuple[models.Fitted | None, dict | None]:
    """The registry's champion of ``workload`` to start from, and where it came from; (None,
    None) when there is no champion yet. The registry is outside DVC's DAG: model.json (and so
    the lineage) names the champion version and the hash of its weights instead."""
    import hashlib
    import json

    from flows.registry import champion

    current = champion(workload)
    if current is None:
        log().info("train@%s: warm_start is on but there is no champion yet; training from scratch", workload)
        return None, None
    version, folder = current
    weights = require(folder / "model.safetensors", "champion weights").read_bytes()
    start = models.from_bytes(json.loads(require(folder / "model.json", "champion spec").read_text()), weights)
    return start, {"champion": version, "weights_sha256": hashlib.sha256(weights).hexdigest()}


def _fingerprint(split: Path, params: config.Workload, source: dict | None) -> str:
    """What a checkpoint must have been made from to be resumed: the same train/val data,
    params, starting weights and training code."""
    import hashlib
    import json

    from flows.storage import code

    sections = [params.settings("schema"), params.settings("model"), params.settings("train"), source]
    digest = hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode())
    digest.update(code.digest("train").encode())  # the code train runs, as dvc.yaml lists it
    for path in [*parquet_files(split / "train"), *parquet_files(split / "val")]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


SEAL = b"cairn-checkpoint sha256:"


def seal(data: bytes) -> bytes:
    """``data`` behind a line with its SHA-256, so a damaged checkpoint is never resumed from."""
    import hashlib

    return SEAL + hashlib.sha256(data).hexdigest().encode() + b"\n" + data


def unseal(sealed: bytes) -> bytes:
    """The data ``seal`` wrapped; ValueError when the header is missing or the hash differs."""
    import hashlib

    header, _, data = sealed.partition(b"\n")
    if not header.startswith(SEAL):
        raise ValueError("no checksum header")
    if header[len(SEAL) :].decode(errors="replace") != hashlib.sha256(data).hexdigest():
        raise ValueError("its SHA-256 does not match: the file was damaged")
    return data


def _resumable(checkpoint: Path, fingerprint: str, workload: str) -> dict | None:
    """The training state in ``checkpoint`` if an interrupted run of these same inputs left it,
    and it is whole (its checksum matches)."""
    if not checkpoint.exists():
        return None
    try:
        state = torchnet.state_from_bytes(unseal(checkpoint.read_bytes()))
    except Exception as err:  # unreadable: training from scratch loses time, not correctness
        log().warning("train@%s: ignoring unreadable checkpoint %s (%s)", workload, checkpoint, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log().info("train@%s: ignoring %s: it was made from other data, params or code", workload, checkpoint)
        return None
    log().info("train@%s: resuming an interrupted run after epoch %d (%s)", workload, len(state["history"]), checkpoint)
    return state
