"""train: fit a classifier on the train set, stopping early on the validation set.

The loop is as lean as the bare reference loop: the data is normalised and moved to the
device once, batches are index slices of one tensor, and the loss is read back once per
epoch, so the stage costs what the arithmetic costs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from steps import StepError, models


@dataclass(frozen=True)
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float  # wall time of the epoch: for run records, never for DVC outputs


@dataclass
class Trained:
    model: models.Classifier
    spec: dict[str, Any]
    history: list[Epoch] = field(default_factory=list)
    best_epoch: int = 0


OnEpoch = Callable[[Epoch, models.Classifier, torch.optim.Optimizer], None]


def pick_device(wanted: str) -> torch.device:
    """'auto' takes CUDA when a GPU is visible; 'cuda' without one is an error, not a fallback."""
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise StepError("train: device is 'cuda' in params.yaml but no CUDA device is visible")
    return torch.device(wanted)


def _optimizer(params: dict[str, Any], weights) -> torch.optim.Optimizer:
    kinds = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if params["optimizer"] not in kinds:
        raise StepError(f"train: optimizer is {params['optimizer']!r}; expected one of {sorted(kinds)}")
    return kinds[params["optimizer"]](weights, lr=params["lr"], weight_decay=params["weight_decay"])


def _evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``net`` on normalised ``x``."""
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = net(x[i : i + batch])
            loss += nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def train(
    train_set: pa.Table,
    val_set: pa.Table,
    schema: dict[str, Any],
    model_params: dict[str, Any],
    params: dict[str, Any],
    on_epoch: OnEpoch | None = None,
) -> Trained:
    """Train ``model_params['name']`` with ``params`` (seed, device, epochs, batch_size,
    optimizer, lr, weight_decay, schedule, monitor, patience).

    Returns the model at the best validation epoch, its spec and the per-epoch history.
    Randomness comes from ``params['seed']`` alone; the global RNG is left as it was.
    """
    device = pick_device(params["device"])
    label = schema["label"]
    classes = sorted(set(train_set.column(label).to_pylist()))
    x = models.features(train_set, schema)
    mean, std = models.fit_normalizer(x, model_params["normalize"])
    spec = {
        "model": model_params,
        "n_features": int(x.shape[1]),
        "classes": classes,
        "normalizer_size": int(mean.shape[0]),
        "schema": schema,
    }

    def prepare(table: pa.Table, xs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xn = torch.from_numpy((xs - mean) / std).to(device)
        return xn, torch.from_numpy(models.labels(table, label, classes)).to(device)

    x_train, y_train = prepare(train_set, x)
    x_val, y_val = prepare(val_set, models.features(val_set, schema))

    better = {"val_loss": lambda new, old: new < old, "val_accuracy": lambda new, old: new > old}
    if params["monitor"] not in better:
        raise StepError(f"train: monitor is {params['monitor']!r}; expected one of {sorted(better)}")

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(params["seed"])
        model = models.build(spec, mean, std).to(device)
        net = model.net
        optimizer = _optimizer(params, net.parameters())
        batch = params["batch_size"]
        steps = params["epochs"] * math.ceil(len(x_train) / batch)
        schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if params["schedule"] == "cosine" else None
        )
        order = torch.Generator().manual_seed(params["seed"])
        loss_fn = nn.CrossEntropyLoss()
        result = Trained(model, spec)
        best_score, best_state, waited = None, None, 0
        for epoch in range(1, params["epochs"] + 1):
            started = time.perf_counter()
            net.train()
            perm = torch.randperm(len(x_train), generator=order).to(device)
            total = torch.zeros((), device=device)
            for i in range(0, len(x_train), batch):
                idx = perm[i : i + batch]
                optimizer.zero_grad()
                loss = loss_fn(net(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                total += loss.detach() * len(idx)
            val_loss, val_accuracy = _evaluate(net, x_val, y_val)
            record = Epoch(
                epoch=epoch,
                train_loss=total.item() / len(x_train),
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - started,
            )
            result.history.append(record)
            score = getattr(record, params["monitor"])
            if best_score is None or better[params["monitor"]](score, best_score):
                best_score, best_state, waited = score, copy.deepcopy(model.state_dict()), 0
                result.best_epoch = epoch
            else:
                waited += 1
            if on_epoch is not None:
                on_epoch(record, model, optimizer)
            if waited >= params["patience"]:
                break
    model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    return result


def history_csv(history: list[Epoch]) -> str:
    """The loss curves as CSV (a DVC plot)."""
    lines = ["epoch,train_loss,val_loss,val_accuracy,lr"]
    lines += [f"{e.epoch},{e.train_loss:.6f},{e.val_loss:.6f},{e.val_accuracy:.6f},{e.lr:.6g}" for e in history]
    return "\n".join(lines) + "\n"
