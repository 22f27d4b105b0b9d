"""autoencoder: encoder (784-250-50) and decoder (50-250-784, sigmoid out) trained on MSE."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from steps.models import Data, Fitted, OnEpoch, torchnet

WARM_START = True  # fit starts from data.start when given
TASK = "reconstruction"
TORCH_LOOP = True  # fit runs torchnet's training loop, small torch ops one after another


class AutoEncoder(nn.Module):
    def __init__(self, n_in: int, hidden: list[int]):
        super().__init__()
        widths = [n_in, *hidden]
        enc: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            enc += [nn.Linear(a, b), nn.ReLU()]
        dec: list[nn.Module] = []
        back = widths[::-1]
        for a, b in zip(back[:-1], back[1:], strict=True):
            dec += [nn.Linear(a, b), nn.ReLU()]
        dec[-1] = nn.Sigmoid()  # pixels in [0, 1]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _net(spec: dict[str, Any]) -> AutoEncoder:
    """``model.hidden``: the encoder's widths, e.g. [250, 50]; the decoder mirrors them."""
    return AutoEncoder(spec["n_features"], spec["model"]["hidden"])


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    return torchnet.fit(lambda: _net(spec), data, spec, params, "mse", on_epoch)


def model(fitted: Fitted) -> torchnet.Wrapped:
    return torchnet.rebuild(fitted, _net(fitted.spec), "identity")


def predict(fitted: Fitted, x: np.ndarray) -> np.ndarray:
    """Reconstructions of ``x``."""
    return torchnet.predict(model(fitted), x)


class _Encoder(nn.Module):
    def __init__(self, wrapped: torchnet.Wrapped):
        super().__init__()
        self.wrapped = wrapped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wrapped.net.encoder((x - self.wrapped.mean) / self.wrapped.std)


def to_onnx(fitted: Fitted) -> dict[str, bytes]:
    """The whole model, and encoder and decoder apart (the encoder gives embeddings)."""
    whole = model(fitted)
    code = fitted.spec["model"]["hidden"][-1]
    return {
        "model.onnx": torchnet.to_onnx(whole, fitted.spec["n_features"], "reconstruction"),
        "encoder.onnx": torchnet.to_onnx(_Encoder(whole), fitted.spec["n_features"], "embedding"),
        "decoder.onnx": torchnet.to_onnx(whole.net.decoder, code, "reconstruction", input="embedding"),
    }
