"""mlp: a multilayer perceptron with ReLU hidden layers; the last layer gives logits."""

from __future__ import annotations

from typing import Any

from torch import nn


def build(n_in: int, n_out: int, config: dict[str, Any]) -> nn.Module:
    """``config``: ``hidden`` (list of layer widths) and ``dropout`` (0 for none)."""
    layers: list[nn.Module] = []
    width = n_in
    for hidden in config["hidden"]:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if config.get("dropout"):
            layers.append(nn.Dropout(config["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)
