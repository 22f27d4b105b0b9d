import numpy as np
import pytest
from conftest import BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN, blobs_sets

from steps import evaluate, figures, models, publish, train
from steps.models import mlp


@pytest.fixture(scope="module")
def trained():
    sets = blobs_sets(200)
    return train.train(sets["train"], sets["val"], BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN | {"epochs": 5}), sets["test"]


def test_onnx_matches_the_native_model(trained):
    fitted, test = trained
    x = models.features(test, BLOBS_SCHEMA, fitted.spec["encoding"])
    onnx_bytes = mlp.to_onnx(fitted)["model.onnx"]
    check = publish.parity(mlp.predict(fitted, x), publish.onnx_predict(onnx_bytes, x, "probabilities"))
    assert check["label_agreement"] == 1.0
    assert check["max_diff"] <= 1e-5
    publish.check_parity("ONNX", check, 0.999, 1e-4)  # does not raise
    assert mlp.to_onnx(fitted)["model.onnx"] == onnx_bytes  # deterministic


def test_parity_gate_refuses_a_model_that_disagrees():
    native = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(publish.PublishError, match="ONNX and native labels agree on 50.0000% of 2 test rows"):
        publish.check_parity("ONNX", publish.parity(native, native[[0, 0]]), 0.999, 1e-4)
    with pytest.raises(publish.PublishError, match="ONNX predictions differ from native by up to 0.001"):
        publish.check_parity("ONNX", publish.parity(native, native + 1e-3), 0.999, 1e-4)


def test_parity_of_values_is_relative_to_their_size():
    native = np.array([1000.0, 2000.0])
    assert publish.parity(native, native + 0.002, classes=False)["max_diff"] == pytest.approx(1e-6)


def test_lineage_needs_every_upstream_stage_and_keeps_only_the_declared_data():
    lock = {
        "stages": {
            f"{s}@w": {"deps": [{"path": "a", "md5": "1"}, {"path": "steps/x.py", "md5": "c"}],
                       "outs": [{"path": "b/rows", "md5": "2"}, {"path": "b/figure.png", "md5": "f"}]}
            for s in ("ingest", "clean", "split", "train")
        }
    }  # fmt: skip
    with pytest.raises(publish.PublishError, match="no stage 'evaluate@w'"):
        publish.lineage(lock, "w", {}, ["a", "b/rows"])
    lock["stages"]["evaluate@w"] = lock["stages"]["train@w"]
    record = publish.lineage(lock, "w", {"x": 1}, ["a", "b/rows/"])
    assert record["stages"]["ingest"] == {"deps": {"a": "1"}, "outs": {"b/rows": "2"}}  # not code, not figures
    with pytest.raises(publish.PublishError, match="dvc.lock records none of c/metrics.json for 'w'"):
        publish.lineage(lock, "w", {}, ["a", "c/metrics.json"])


def test_metrics_and_predictions_for_the_confusion_plot():
    y = np.array([0, 1, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 2]]
    m = evaluate.metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(0.666667), "support": 2}
    csv = evaluate.predictions_csv(y, proba.argmax(1), ["a", "b", "c"])
    assert csv.splitlines()[:3] == ["actual,predicted", "a,a", "b,b"]
    png = figures.confusion_png(m["confusion_matrix"], ["a", "b", "c"], "t")
    assert png.startswith(b"\x89PNG") and png == figures.confusion_png(m["confusion_matrix"], ["a", "b", "c"], "t")


def test_binary_metrics_use_the_threshold_and_report_auc():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    m = evaluate.metrics(y, proba, [0, 1], threshold=0.3)
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == 0.75
    assert evaluate.roc_curve_csv(y, proba).splitlines()[0] == "x,y"
