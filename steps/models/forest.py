"""forest: a random forest classifier (scikit-learn), served by an interpreter.

The trees are kept as plain arrays (node children, features, thresholds, class shares) in
safetensors, and predicted from those arrays in numpy; the ONNX file (a TreeEnsemble that
onnxruntime interprets, no generated code) is converted by skl2onnx at training time, when
the fitted estimator exists, and kept as bytes beside the arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steps.models import Data, Fitted, OnEpoch

TASK = "classification"
TREE_FIELDS = ("children_left", "children_right", "feature", "threshold", "value")


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    """``model``: trees, max_depth, min_samples_leaf; ``train.seed`` seeds the forest."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    config = spec["model"]
    forest = RandomForestClassifier(
        n_estimators=config["trees"],
        max_depth=config["max_depth"],
        min_samples_leaf=config["min_samples_leaf"],
        random_state=params["seed"],
        n_jobs=1,  # one job: the same trees and the same bytes on any machine
    )
    forest.fit(data.x_train, data.y_train)
    arrays: dict[str, np.ndarray] = {}
    for i, tree in enumerate(forest.estimators_):
        t = tree.tree_
        value = t.value[:, 0, :]
        arrays |= {
            f"tree{i}.children_left": t.children_left.astype(np.int32),
            f"tree{i}.children_right": t.children_right.astype(np.int32),
            f"tree{i}.feature": t.feature.astype(np.int32),
            f"tree{i}.threshold": t.threshold.astype(np.float64),
            f"tree{i}.value": (value / value.sum(axis=1, keepdims=True)).astype(np.float64),
        }
    onnx_model = convert_sklearn(
        forest,
        initial_types=[("features", FloatTensorType([None, data.x_train.shape[1]]))],
        options={id(forest): {"zipmap": False}},
        target_opset=17,
    )
    onnx_model.graph.name = "forest"  # skl2onnx names the graph with a random uuid: same model, same bytes
    arrays["onnx"] = np.frombuffer(onnx_model.SerializeToString(), dtype=np.uint8)
    fitted = Fitted(spec | {"n_trees": len(forest.estimators_)}, arrays)
    return fitted


def predict(fitted: Fitted, x: np.ndarray) -> np.ndarray:
    """Class probabilities: the mean over trees of the class shares in the leaf each row reaches."""
    x = x.astype(np.float32)
    rows = np.arange(len(x))
    proba = np.zeros((len(x), len(fitted.spec["classes"])))
    for i in range(fitted.spec["n_trees"]):
        left, right, feature, threshold, value = (fitted.arrays[f"tree{i}.{f}"] for f in TREE_FIELDS)
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            go_left = x[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        proba += value[node]
    return (proba / fitted.spec["n_trees"]).astype(np.float32)


def to_onnx(fitted: Fitted) -> dict[str, bytes]:
    return {"model.onnx": fitted.arrays["onnx"].tobytes()}
