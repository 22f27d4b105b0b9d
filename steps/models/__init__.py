"""Models: from tables to arrays, preprocessing fitted on train, and the model registry.

A model is a module in this package (its name is ``model.name`` in params.yaml) with:

- ``TASK``: 'classification' (predicts class probabilities), 'regression' (a value) or
  'reconstruction' (its input back);
- ``fit(data: Data, spec: dict, params: dict, on_epoch) -> Fitted``;
- ``predict(fitted, x) -> np.ndarray``: the native prediction (probabilities, values, or
  reconstructions), and optionally ``predict_all(fitted, x) -> {variant: prediction}`` when
  it trains several solvers;
- ``to_onnx(fitted) -> {file name: ONNX bytes}``;
- optionally ``coefficients(fitted) -> dict``: plain JSON another language can compute with,
  and ``predict_coefficients(coefs, x)``: that computation in numpy, to check the JSON;
- optionally ``exclusive(model settings) -> bool``: True when ``fit`` holds process-wide state
  from start to end (torch's global generator, for dropout: torchnet.exclusive); the pipeline's
  waves (flows/runtime/pipeline.py) then train one such model at a time. Other torch fits run
  side by side: each seeds its net's construction in turn (torchnet._SEEDING);
- optionally ``TORCH_LOOP = True`` when ``fit`` runs torchnet's training loop: thousands of small
  torch ops a second, each handing the GIL back and forth, so a big such fit runs best in a
  process of its own (flows/runtime/pipeline.py: own_process);
- optionally ``WARM_START = True`` when ``fit`` starts from ``data.start`` (fine-tuning);
  a model that sets ``fitted.state`` each epoch goes on from ``data.resume`` (checkpoints).

Adding a model is that module plus a params entry; no stage changes.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from steps import BadInput, arrow
from steps.schema import resolve_features

TASKS = ("classification", "regression", "reconstruction")


class ModelError(BadInput):
    """A model spec or input that does not fit."""


@dataclass(frozen=True)
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float | None
    lr: float
    seconds: float  # wall time of the epoch: for run records, never for DVC outputs


OnEpoch = Callable[[Epoch, "Fitted"], None]


@dataclass
class Data:
    """Training inputs as arrays: features (raw, encoded), targets, and the fitted normaliser."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    start: dict[str, np.ndarray] | None = None  # weights to start from (fine-tuning), not a random init
    resume: dict[str, Any] | None = None  # an interrupted run's training state to go on from


@dataclass
class Fitted:
    """A trained model: ``spec`` (JSON) says what it is, ``arrays`` (safetensors) hold its numbers."""

    spec: dict[str, Any]
    arrays: dict[str, np.ndarray]
    history: list[Epoch] = field(default_factory=list)
    best_epoch: int = 0
    # After each epoch, for on_epoch: all a model needs to go on after an interruption
    # (Data.resume) to the bytes an uninterrupted run gives. None for models that cannot.
    state: dict[str, Any] | None = None


def architecture(spec: dict[str, Any]) -> dict[str, Any]:
    """What fixes the shapes and meaning of a model's weights: two specs with equal
    architectures can start one from the other's weights."""
    return {k: spec.get(k) for k in ("task", "model", "n_features", "feature_names", "classes")}


def module(name: str) -> ModuleType:
    """The model module ``steps/models/<name>.py``."""
    try:
        found = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise ModelError(f"model.name is {name!r}; there is no module steps/models/{name}.py") from None
    if getattr(found, "TASK", None) not in TASKS:
        raise ModelError(f"steps/models/{name}.py has no TASK in {TASKS}")
    return found


def fit_encoding(table: pa.Table, schema: dict[str, Any]) -> dict[str, Any]:
    """Feature names after one-hot encoding of the categorical columns, levels from train rows."""
    categorical = set(schema.get("categorical") or [])
    if schema.get("image"):
        size = int(np.prod(schema["image"]["shape"]))
        return {"columns": [schema["image"]["column"]], "names": [f"pixel_{i}" for i in range(size)], "levels": {}}
    schema = resolve_features(schema, table.column_names)  # features: null -> every other column
    levels = {
        c: sorted({v for v in table.column(c).to_pylist() if v is not None})
        for c in schema["features"]
        if c in categorical
    }
    names = []
    for col in schema["features"]:
        names += [f"{col}={level}" for level in levels[col]] if col in levels else [col]
    return {"columns": list(schema["features"]), "names": names, "levels": levels}


def decide(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class indices: class 1 when P(1) >= threshold for a binary model with one, else argmax.
    Here, not in steps/evaluate, so that scoring does not import scikit-learn (about 1.3 s)."""
    if threshold is not None and proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1)


def features(
    table: pa.Table, schema: dict[str, Any], encoding: dict[str, Any] | None = None, writable: bool = True
) -> np.ndarray:
    """The feature matrix (rows, n_features) as float32: pixels, numbers, and one-hot categories
    (a level not seen in train encodes as all zeros). Not ``writable``: images may be a view of
    the table's memory (scoring only reads them)."""
    if schema.get("image"):
        column = table.column(schema["image"]["column"]).combine_chunks()
        flat = arrow.to_numpy(column.flatten())
        return flat.astype(np.float32, copy=writable).reshape(len(column), column.type.list_size)
    levels = (encoding or {}).get("levels", {})
    columns = encoding["columns"] if encoding else resolve_features(schema, table.column_names)["features"]
    parts = []
    for col in columns:
        column = table.column(col)
        if col in levels:  # one column per level: equal to it (a missing or unseen value: none is)
            hot = [pc.fill_null(pc.equal(column, arrow.scalar(level, column.type)), arrow.scalar(False, pa.bool_()))
                   for level in levels[col]]  # fmt: skip
            parts.append(np.stack([arrow.to_numpy(h) for h in hot], axis=1).reshape(len(column), -1))
        else:
            parts.append(arrow.to_numpy(column).reshape(-1, 1))
    return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.empty((table.num_rows, 0), np.float32)


def labels(table: pa.Table, label: str, classes: list) -> np.ndarray:
    """Class indices of the label column; raises ModelError for a class the model never saw."""
    index = {c: i for i, c in enumerate(classes)}
    values = table.column(label).to_pylist()
    try:
        return np.array([index[v] for v in values], dtype=np.int64)
    except KeyError as err:
        raise ModelError(f"label {err.args[0]!r} in column '{label}' is not a class seen in train: {classes}") from None


def targets(table: pa.Table, task: str, label: str, classes: list | None) -> np.ndarray:
    """What the model learns to predict: class indices, values, or nothing (reconstruction)."""
    if task == "classification":
        return labels(table, label, classes)
    if task == "regression":
        return table.column(label).to_numpy(zero_copy_only=False).astype(np.float32)
    return np.empty((table.num_rows, 0), np.float32)


def fit_normalizer(x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) fitted on train rows: per feature, one for all features, or identity."""
    if mode == "feature":
        mean, std = x.mean(axis=0), x.std(axis=0)
    elif mode == "global":
        mean, std = np.array([x.mean()]), np.array([x.std()])
    elif mode == "none":
        mean, std = np.zeros(1), np.ones(1)
    else:
        raise ModelError(f"model.normalize is {mode!r}; expected 'feature', 'global' or 'none'")
    std = np.where(std < 1e-8, 1.0, std)  # constant features (MNIST's borders) stay as they are
    return mean.astype(np.float32), std.astype(np.float32)


def to_bytes(fitted: Fitted, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes of the model's arrays."""
    arrays = {k: np.ascontiguousarray(v) for k, v in fitted.arrays.items()}
    return save_arrays(arrays, metadata={"format": "np", **(metadata or {})})


def from_bytes(spec: dict[str, Any], weights: bytes) -> Fitted:
    """The Fitted model described by ``spec`` with the arrays in safetensors ``weights``."""
    return Fitted(spec, load_arrays(weights))


def spec_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"
