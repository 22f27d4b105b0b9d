"""Models: from tables to arrays, preprocessing fitted on train, and model (de)serialisation.

A model is a module in this package with ``build(n_in, n_out, config) -> nn.Module`` that
returns logits; adding one is that module plus its name in params.yaml (``model.name``).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from steps import StepError


class ModelError(StepError):
    """A model spec or input that does not fit."""


def features(table: pa.Table, schema: dict[str, Any]) -> np.ndarray:
    """The feature matrix (rows, n_features) as float32, in schema order."""
    if schema.get("image"):
        column = table.column(schema["image"]["column"]).combine_chunks()
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return flat.astype(np.float32).reshape(len(column), column.type.list_size)  # a writable copy
    return np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in schema["features"]]).astype(
        np.float32
    )


def labels(table: pa.Table, label: str, classes: list) -> np.ndarray:
    """Class indices of the label column; raises ModelError for a class the model never saw."""
    index = {c: i for i, c in enumerate(classes)}
    values = table.column(label).to_pylist()
    try:
        return np.array([index[v] for v in values], dtype=np.int64)
    except KeyError as err:
        raise ModelError(f"label {err.args[0]!r} in column '{label}' is not a class seen in train: {classes}") from None


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


class Classifier(nn.Module):
    """Raw features in, class probabilities out: normalisation, the network, softmax.

    Training calls ``net`` on data normalised once up front; the exported model carries
    the normalisation so a consumer feeds it raw features.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self.normalize(x)), dim=1)


def build(spec: dict[str, Any], mean: np.ndarray | None = None, std: np.ndarray | None = None) -> Classifier:
    """A fresh Classifier from a spec: ``model`` params plus n_features, classes, normalizer_size.

    Without ``mean`` and ``std`` the normaliser is a placeholder that loading weights fills.
    """
    name = spec["model"]["name"]
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise ModelError(f"model.name is {name!r}; there is no module steps/models/{name}.py") from None
    net = module.build(spec["n_features"], len(spec["classes"]), spec["model"])
    size = spec["normalizer_size"]
    mean = np.zeros(size, np.float32) if mean is None else mean
    std = np.ones(size, np.float32) if std is None else std
    return Classifier(net, torch.from_numpy(mean), torch.from_numpy(std))


def to_bytes(model: Classifier, metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes of all weights and buffers, with optional string metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_tensors(state, metadata={"format": "pt", **(metadata or {})})


def from_bytes(spec: dict[str, Any], weights: bytes) -> Classifier:
    """The Classifier described by ``spec`` with the weights in safetensors ``weights``."""
    model = build(spec)
    model.load_state_dict(load_tensors(weights))
    return model.eval()


def spec_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"
