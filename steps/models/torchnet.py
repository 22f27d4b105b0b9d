"""What the PyTorch models share: the training loop, rebuilding a net from arrays, ONNX export.

The loop is as lean as the bare reference loop: data normalised and moved to the device once,
batches are index slices of one tensor, the loss is read back once per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from steps import BadInput
from steps.models import Data, Epoch, Fitted, OnEpoch

ONNX_OPSET = 17
# torch.onnx.export sets a process-wide flag while it runs: a second export at once in the same
# process fails ('GLOBALS.in_onnx_export must be False'). Publish stages of a pipeline run share
# a process, so their exports take turns; everything else about a publish runs side by side.
_EXPORTING = threading.Lock()
# torch's default generator is process-wide too: a fit seeds it to build its net and, when the
# net has dropout, to draw the masks while it trains. Fits in threads of one process hold it in
# turn for as long as they use it: while the net is built, or for the whole fit with dropout.
# Everything else a fit draws (the batch order) comes from a generator of its own.
_SEEDING = threading.Lock()
HEADS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda t: torch.softmax(t, dim=1),
    "sigmoid": torch.sigmoid,
    "identity": lambda t: t,
}


class Wrapped(nn.Module):
    """Raw features in, the prediction out: normalisation, the network, the output head.

    Training calls ``net`` on data normalised once up front; the exported model carries the
    normalisation so a consumer feeds it raw features.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, head: str):
        super().__init__()
        self.net = net
        self.head = head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return HEADS[self.head](self.net((x - self.mean) / self.std))


def pick_device(wanted: str) -> torch.device:
    """'auto' takes CUDA when a GPU is visible; 'cuda' without one is an error, not a fallback."""
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise BadInput("train: device is 'cuda' in params.yaml but no CUDA device is visible")
    return torch.device(wanted)


def _optimizer(params: dict[str, Any], weights) -> torch.optim.Optimizer:
    kinds = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if params["optimizer"] == "lbfgs":
        # Full-batch quasi-Newton with a line search: a convex model (logistic, linear) reaches its
        # optimum, where SGD stops wherever the epochs run out.
        return torch.optim.LBFGS(weights, lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20, tolerance_grad=1e-9,
                                 tolerance_change=1e-12, line_search_fn="strong_wolfe")  # fmt: skip
    if params["optimizer"] not in kinds:
        raise BadInput(f"train: optimizer is {params['optimizer']!r}; expected one of {sorted(kinds)} or 'lbfgs'")
    # Adam's fused kernel: one pass over the weights per step instead of a loop of tensor ops;
    # measured 2.3 against 2.95 ms a step for the MNIST autoencoder at batch 64 on one CPU thread
    # (docs/benchmarks.md). Same update rule, not the same rounding: other bytes than foreach.
    fused = {"fused": True} if params["optimizer"] == "adam" else {}
    return kinds[params["optimizer"]](weights, lr=params["lr"], weight_decay=params["weight_decay"] or 0.0, **fused)


def draws_at_random(net: nn.Module) -> bool:
    """Whether training ``net`` draws from torch's global generator (dropout)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in net.modules())


def exclusive(model: dict[str, Any]) -> bool:
    """A model's ``exclusive``: whether its fit holds torch's global generator from start to end
    (dropout), so that the pipeline's waves train one such model at a time in a process."""
    return bool(model.get("dropout"))


LBFGS_ITERATIONS = 20  # per epoch: an epoch of L-BFGS is this many full-batch iterations
CONVERGED = 1e-9  # L-BFGS stops when an epoch lowers the train loss by less than this, relatively


LOSSES = {"cross_entropy": nn.functional.cross_entropy, "mse": nn.functional.mse_loss}


def _evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, batch: int = 8192):
    """(mean loss, accuracy or None) of ``net`` on normalised ``x``."""
    net.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i : i + batch])
            target = y[i : i + batch]
            total += LOSSES[loss](out, target, reduction="sum").item()
            if loss == "cross_entropy":
                correct += (out.argmax(1) == target).sum().item()
    per_value = len(x) if loss == "cross_entropy" else y.numel()
    return total / per_value, (correct / len(x) if loss == "cross_entropy" else None)


def fit(
    net_for: Callable[[], nn.Module],
    data: Data,
    spec: dict[str, Any],
    params: dict[str, Any],
    loss: str,
    on_epoch: OnEpoch | None,
) -> Fitted:
    """Train the net ``net_for()`` builds with ``params`` (seed, device, epochs, batch_size,
    optimizer, lr, weight_decay, schedule, monitor, patience: 0 for none) and keep its best
    validation epoch; with optimizer 'lbfgs', full-batch L-BFGS until the train loss stops
    falling, keeping the last weights (the optimum of a convex model).

    ``loss`` 'cross_entropy' learns class indices; 'mse' learns ``data.y`` or, when y has no
    columns, the (normalised) input itself. Randomness comes from ``params['seed']`` alone.
    """
    device = pick_device(params["device"])
    better = {"val_loss": lambda new, old: new < old, "val_accuracy": lambda new, old: new > old}
    if params["monitor"] not in better:
        raise BadInput(f"train: monitor is {params['monitor']!r}; expected one of {sorted(better)}")

    def prepare(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xn = torch.from_numpy((x - data.mean) / data.std).to(device)
        target = xn if y.ndim == 2 and y.shape[1] == 0 else torch.from_numpy(y).to(device)
        return xn, target

    x_train, y_train = prepare(data.x_train, data.y_train)
    x_val, y_val = prepare(data.x_val, data.y_val)
    devices = [device.index or 0] if device.type == "cuda" else []
    with contextlib.ExitStack() as seeded:
        seeded.enter_context(_SEEDING)
        seeded.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(params["seed"])
        net = net_for()
        if not draws_at_random(net):
            seeded.close()  # built: another fit in this process may seed the generator now
        if data.start is not None:  # fine-tuning: the checked architecture makes strict loading safe
            net.load_state_dict({k.removeprefix("net."): torch.from_numpy(v) for k, v in data.start.items()})
        net = net.to(device)
        optimizer = _optimizer(params, net.parameters())
        lbfgs = isinstance(optimizer, torch.optim.LBFGS)
        batch = len(x_train) if lbfgs else params["batch_size"]
        steps = params["epochs"] * math.ceil(len(x_train) / batch)
        schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
            if params["schedule"] == "cosine" and not lbfgs
            else None
        )
        order = torch.Generator().manual_seed(params["seed"])
        loss_fn = LOSSES[loss]
        fitted = Fitted(spec, {})
        loop = {"best_score": None, "best_state": None, "waited": 0}
        if data.resume is not None:
            loop = _restore(data.resume, net, optimizer, schedule, order, fitted, device)
        for epoch in range(len(fitted.history) + 1, params["epochs"] + 1):
            if (params["patience"] and loop["waited"] >= params["patience"]) or loop.get("converged"):
                break  # stopped early (or converged), maybe before an interruption
            started = time.perf_counter()
            net.train()
            perm = torch.randperm(len(x_train), generator=order).to(device)
            total = torch.zeros((), device=device)
            if lbfgs:
                total += _lbfgs_epoch(net, optimizer, loss_fn, x_train, y_train, params["weight_decay"] or 0.0) * len(
                    x_train
                )
            for i in range(0, len(x_train), batch) if not lbfgs else ():
                idx = perm[i : i + batch]
                optimizer.zero_grad()
                step_loss = loss_fn(net(x_train[idx]), y_train[idx])
                step_loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                total += step_loss.detach() * len(idx)
            val_loss, val_accuracy = _evaluate(net, x_val, y_val, loss)
            record = Epoch(
                epoch=epoch,
                train_loss=total.item() / len(x_train),
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - started,
            )
            fitted.history.append(record)
            score = getattr(record, params["monitor"])
            if score is None:
                raise BadInput(f"train: monitor {params['monitor']!r} needs a classifier; use 'val_loss'")
            if lbfgs:  # solved to convergence: the last weights are the optimum, not the best epoch
                previous = fitted.history[-2].train_loss if len(fitted.history) > 1 else None
                converged = previous is not None and previous - record.train_loss <= CONVERGED * max(1.0, abs(previous))
                loop = {"best_score": score, "best_state": copy.deepcopy(net.state_dict()), "waited": 0,
                        "converged": converged}  # fmt: skip
                fitted.best_epoch = epoch
            elif loop["best_score"] is None or better[params["monitor"]](score, loop["best_score"]):
                loop = {"best_score": score, "best_state": copy.deepcopy(net.state_dict()), "waited": 0}
                fitted.best_epoch = epoch
            else:
                loop["waited"] += 1
            if on_epoch is not None:
                fitted.arrays = arrays_of(net, data)
                fitted.state = _state(net, optimizer, schedule, order, fitted, loop, device)
                on_epoch(record, fitted)
    net.load_state_dict(loop["best_state"])
    fitted.arrays = arrays_of(net, data)
    fitted.state = None
    return fitted


def _lbfgs_epoch(net, optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> torch.Tensor:
    """One epoch of full-batch L-BFGS; the train loss (mean, without the penalty) after it.
    ``weight_decay`` is an L2 penalty of weight_decay / 2 * |W|² on the weights, not the biases."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        if weight_decay:
            loss = loss + weight_decay / 2 * sum((w**2).sum() for n, w in net.named_parameters() if "weight" in n)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return loss_fn(net(x), y)


def _state(net, optimizer, schedule, order, fitted: Fitted, loop: dict, device: torch.device) -> dict[str, Any]:
    """Everything the loop needs to go on after this epoch as if never stopped: weights,
    optimizer and schedule state, the random generators, early-stopping state, history."""
    return {
        "net": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "order": order.get_state(),
        "rng": torch.get_rng_state(),  # dropout draws from the (forked) global generator; others: unused
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": [dataclasses.asdict(e) for e in fitted.history],
        "best_epoch": fitted.best_epoch,
        **loop,
    }


def _restore(state: dict[str, Any], net, optimizer, schedule, order, fitted: Fitted, device) -> dict[str, Any]:
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    if schedule is not None:
        schedule.load_state_dict(state["schedule"])
    order.set_state(state["order"])
    if draws_at_random(net):  # its fit holds the (forked) global generator: _SEEDING
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    fitted.history = [Epoch(**e) for e in state["history"]]
    fitted.best_epoch = state["best_epoch"]
    return {k: state[k] for k in ("best_score", "best_state", "waited", "converged") if k in state}


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """A training state as bytes (torch's format, tensors and plain values only)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """The state ``state_to_bytes`` wrote; ``weights_only`` loads no pickled code."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def arrays_of(net: nn.Module, data: Data) -> dict[str, np.ndarray]:
    arrays = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    return arrays | {"mean": data.mean, "std": data.std}


def rebuild(fitted: Fitted, net: nn.Module, head: str) -> Wrapped:
    """The trained Wrapped model: ``net`` (freshly built) with the fitted arrays loaded."""
    state = {k.removeprefix("net."): torch.from_numpy(v) for k, v in fitted.arrays.items() if k.startswith("net.")}
    net.load_state_dict(state)
    mean, std = (torch.from_numpy(np.asarray(fitted.arrays[k])) for k in ("mean", "std"))
    return Wrapped(net, mean, std, head).eval()


def predict(model: nn.Module, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    with torch.no_grad():
        parts = [
            model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy() for i in range(0, len(x), batch)
        ]
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def to_onnx(model: nn.Module, n_features: int, output: str, input: str = "features") -> bytes:
    """ONNX bytes of ``model``: ``input`` (batch, n_features) float32 -> ``output``."""
    buf = io.BytesIO()
    with _EXPORTING:
        _export(model, n_features, output, input, buf)
    return buf.getvalue()


def _export(model: nn.Module, n_features: int, output: str, input: str, buf: io.BytesIO) -> None:
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, n_features),),
        buf,
        input_names=[input],
        output_names=[output],
        dynamic_axes={input: {0: "batch"}, output: {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,  # the TorchScript exporter needs no onnxscript and is deterministic
    )
