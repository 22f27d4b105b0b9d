import numpy as np
import pytest
from conftest import BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN, blobs_sets

from steps import evaluate, models, publish, train


@pytest.fixture(scope="module")
def trained():
    sets = blobs_sets(200)
    return train.train(sets["train"], sets["val"], BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN | {"epochs": 5}), sets["test"]


def test_onnx_matches_the_native_model(trained):
    result, test = trained
    x = models.features(test, BLOBS_SCHEMA)
    onnx_bytes = publish.to_onnx(result.model, result.spec["n_features"])
    check = publish.parity(evaluate.predict(result.model, x), publish.onnx_predict(onnx_bytes, x))
    assert check["label_agreement"] == 1.0
    assert check["max_probability_diff"] <= 1e-5
    publish.check_parity(check, 0.999, 1e-4)  # does not raise
    assert publish.to_onnx(result.model, result.spec["n_features"]) == onnx_bytes  # deterministic


def test_parity_gate_refuses_a_model_that_disagrees():
    native = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(publish.PublishError, match="labels agree on 50.0000% of 2 test rows"):
        publish.check_parity(publish.parity(native, native[[0, 0]]), 0.999, 1e-4)
    with pytest.raises(publish.PublishError, match="differ from native by up to 0.001"):
        publish.check_parity(publish.parity(native, native + 1e-3), 0.999, 1e-4)


def test_lineage_needs_every_upstream_stage():
    lock = {
        "stages": {
            f"{s}@w": {"deps": [{"path": "a", "md5": "1"}], "outs": [{"path": "b", "md5": "2"}]}
            for s in ("ingest", "clean", "split", "train")
        }
    }
    with pytest.raises(publish.PublishError, match="no stage 'evaluate@w'"):
        publish.lineage(lock, "w", {}, "rev")
    lock["stages"]["evaluate@w"] = lock["stages"]["train@w"]
    record = publish.lineage(lock, "w", {"x": 1}, "rev")
    assert record["stages"]["ingest"] == {"deps": {"a": "1"}, "outs": {"b": "2"}}


def test_metrics_and_predictions_for_the_confusion_plot():
    y = np.array([0, 1, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 2]]
    m = evaluate.metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["b"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(0.666667),
        "support": 2,
    }
    assert evaluate.predictions_csv(y, proba, ["a", "b", "c"]).splitlines()[:3] == [
        "actual,predicted",
        "a,a",
        "b,b",
    ]
    png = evaluate.confusion_png(m["confusion_matrix"], ["a", "b", "c"], "t")
    assert png.startswith(b"\x89PNG") and png == evaluate.confusion_png(m["confusion_matrix"], ["a", "b", "c"], "t")
