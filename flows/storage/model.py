"""A trained model read back from the files train wrote (model.json and model.safetensors).

A module of its own so that only the stages that load a model depend on steps/models."""

from __future__ import annotations

import json
from pathlib import Path

from flows.storage.tables import require
from steps import models


def load_model(train: Path) -> models.Fitted:
    """The model a train stage wrote to ``train``."""
    spec = json.loads(require(train / "model.json", "model spec").read_text())
    return models.from_bytes(spec, require(train / "model.safetensors", "model weights").read_bytes())
