"""mlp: a multilayer perceptron classifier (ReLU hidden layers, softmax out, cross-entropy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from steps.models import Data, Fitted, OnEpoch, torchnet

WARM_START = True  # fit starts from data.start when given
TASK = "classification"
TORCH_LOOP = True  # fit runs torchnet's training loop, small torch ops one after another
exclusive = torchnet.exclusive  # with dropout, one such fit at a time per process


def build(n_in: int, n_out: int, config: dict[str, Any]) -> nn.Module:
    """``config``: ``hidden`` (layer widths; none gives multinomial logistic regression) and
    ``dropout`` (0 for none). The last layer gives logits."""
    layers: list[nn.Module] = []
    width = n_in
    for hidden in config["hidden"]:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if config["dropout"]:
            layers.append(nn.Dropout(config["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _net(spec: dict[str, Any]) -> nn.Module:
    return build(spec["n_features"], len(spec["classes"]), spec["model"])


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    return torchnet.fit(lambda: _net(spec), data, spec, params, "cross_entropy", on_epoch)


def model(fitted: Fitted) -> nn.Module:
    """The native model: raw features in, class probabilities out."""
    return torchnet.rebuild(fitted, _net(fitted.spec), "softmax")


def predict(fitted: Fitted, x: np.ndarray) -> np.ndarray:
    return torchnet.predict(model(fitted), x)


def to_onnx(fitted: Fitted) -> dict[str, bytes]:
    return {"model.onnx": torchnet.to_onnx(model(fitted), fitted.spec["n_features"], "probabilities")}
