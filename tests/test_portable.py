"""Every model's portable forms against the native model: ONNX under onnxruntime, and the plain
JSON coefficients computed here in a few lines of numpy, as a Go service would."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import ROOT, TINY_TRAIN

from flows import config
from steps import clean, ingest, models, publish, sources, split, train

SECTIONS = ("raw", "source", "schema", "clean", "split", "model", "train")


def settings(name: str) -> dict:
    """A workload of params.yaml as its stages hand it to the steps: defaults filled in."""
    workload = config.workload(name, ROOT / "params.yaml")
    return {section: workload.settings(section) for section in SECTIONS}


def prepared(name: str, rows: int):
    """(params, train/val/test tables) of a generated workload, through the real steps."""
    params = settings(name)
    generate = {"sales": sources.sales, "loans": sources.loans}[params["raw"].split("/")[1]]
    table = ingest.from_csv(generate(params["source"] | {"rows": rows}), "raw.csv", params["schema"])
    kept = clean.clean(table, params["schema"], params["clean"]).kept
    return params, split.split(kept, params["schema"]["label"], params["split"])


def fit(name: str, rows: int, **model):
    params, sets = prepared(name, rows)
    fitted = train.train(sets["train"], sets["val"], params["schema"], params["model"] | model,
                         params["train"] | {"epochs": min(params["train"]["epochs"], 20)})  # fmt: skip
    x = models.features(sets["test"], params["schema"], fitted.spec["encoding"])
    return fitted, models.module(fitted.spec["model"]["name"]), x


def onnx_of(module, fitted, x, output):
    return publish.onnx_predict(module.to_onnx(fitted)["model.onnx"], x, output)


def test_linear_json_and_onnx_give_the_native_predictions():
    fitted, module, x = fit("sales", 1500)
    native = module.predict(fitted, x)
    c = module.coefficients(fitted)
    # The whole consumer side: a dozen lines in any language.
    z = (x.astype(np.float64) - np.array(c["mean"])) / np.array(c["std"])
    from_json = c["y_mean"] + c["y_std"] * (z @ np.array(c["weights"]) + c["bias"])
    assert c["features"] == ["users", "ad_spend", "visits"]
    assert np.abs(from_json - native).max() <= 1e-5
    assert publish.parity(native, onnx_of(module, fitted, x, "prediction"), classes=False)["max_diff"] <= 1e-5


def test_linear_recovers_the_generator_within_the_noise():
    fitted, module, x = fit("sales", 4000)
    params, sets = prepared("sales", 4000)
    y = sets["test"].column("sales").to_numpy()
    rmse = {s: float(np.sqrt(((p - y) ** 2).mean())) for s, p in module.predict_all(fitted, x).items()}
    noise = params["source"]["noise"]
    assert abs(rmse["closed"] - noise) / noise < 0.05
    assert abs(rmse["sgd"] - rmse["closed"]) / rmse["closed"] < 0.02


def test_logistic_json_and_onnx_give_the_native_labels_and_probabilities():
    fitted, module, x = fit("loans", 3000)
    native = module.predict(fitted, x)
    c = module.coefficients(fitted)
    z = (x.astype(np.float64) - np.array(c["mean"])) / np.array(c["std"])
    p1 = 1 / (1 + np.exp(-(z @ np.array(c["weights"]) + c["bias"])))
    assert c["features"][-1].startswith("purpose=") and c["classes"] == ["0", "1"]
    assert 0 < c["threshold"] < 1
    assert np.abs(p1 - native[:, 1]).max() <= 1e-5
    assert np.array_equal(p1 >= c["threshold"], native[:, 1] >= c["threshold"])
    check = publish.parity(native, onnx_of(module, fitted, x, "probabilities"), c["threshold"])
    assert check["label_agreement"] == 1.0 and check["max_diff"] <= 1e-5


def test_forest_onnx_is_interpreted_to_the_same_predictions_as_its_trees():
    fitted, module, x = fit("forest", 3000, trees=15)
    native = module.predict(fitted, x)
    check = publish.parity(native, onnx_of(module, fitted, x, "probabilities"), fitted.spec["threshold"])
    assert check["label_agreement"] == 1.0 and check["max_diff"] <= 1e-5
    assert fitted.spec["n_trees"] == 15
    again, _, _ = fit("forest", 3000, trees=15)
    assert models.to_bytes(again) == models.to_bytes(fitted)  # same seed, same bytes (ONNX included)


def test_autoencoder_encoder_then_decoder_is_the_whole_model():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16).astype(np.float32)
    schema = {"label": "digit", "image": {"column": "px", "shape": [8, 8]}, "features": None}
    table = pa.table({
        "key": [str(i) for i in range(len(images))], "digit": digits.target,
        "px": pa.FixedSizeListArray.from_arrays(pa.array(images.ravel()), 64),
    })  # fmt: skip
    model = config.model_settings(name="autoencoder", hidden=[32, 8], normalize="none")
    params = TINY_TRAIN | {"epochs": 3, "batch_size": 64, "lr": 0.005}
    fitted = train.train(table.slice(0, 1500), table.slice(1500), schema, model, params)
    module = models.module("autoencoder")
    files = module.to_onnx(fitted)
    assert set(files) == {"model.onnx", "encoder.onnx", "decoder.onnx"}
    x = images[1500:]
    whole = publish.onnx_predict(files["model.onnx"], x, "reconstruction")
    import onnxruntime as ort

    code = ort.InferenceSession(files["encoder.onnx"]).run(["embedding"], {"features": x})[0]
    assert code.shape == (len(x), 8)
    back = ort.InferenceSession(files["decoder.onnx"]).run(["reconstruction"], {"embedding": code})[0]
    assert np.abs(back - whole).max() <= 1e-5
    assert np.abs(module.predict(fitted, x) - whole).max() <= 1e-5
    assert fitted.history[-1].val_loss < fitted.history[0].val_loss


@pytest.mark.parametrize("name", ["mlp", "logistic", "linear", "autoencoder", "forest"])
def test_every_model_module_has_the_protocol(name):
    module = models.module(name)
    for attr in ("TASK", "fit", "predict", "to_onnx"):
        assert hasattr(module, attr), f"steps/models/{name}.py lacks {attr}"
    assert hasattr(module, "coefficients") == hasattr(module, "predict_coefficients")


def test_logistic_with_lbfgs_reaches_scikit_learns_optimum():
    from sklearn.linear_model import LogisticRegression

    params, sets = prepared("loans", 3000)
    assert params["train"]["optimizer"] == "lbfgs"
    fitted = train.train(sets["train"], sets["val"], params["schema"], params["model"], params["train"])
    x = {k: models.features(t, params["schema"], fitted.spec["encoding"]).astype(np.float64) for k, t in sets.items()}
    y = models.labels(sets["train"], "defaulted", fitted.spec["classes"])
    mean, std = x["train"].mean(axis=0), x["train"].std(axis=0)
    theirs = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10).fit((x["train"] - mean) / std, y)
    ours = models.module("logistic").predict(fitted, x["test"].astype(np.float32))[:, 1]
    assert np.abs(ours - theirs.predict_proba((x["test"] - mean) / std)[:, 1]).max() < 1e-3
    assert len(fitted.history) < params["train"]["epochs"]  # it stopped because it converged


def test_onnx_exports_in_threads_of_one_process_take_turns():
    """A pipeline run publishes in threads of one process, and torch.onnx.export sets a global
    flag: without the lock in torchnet.to_onnx about half of these exports fail."""
    import threading

    import torch
    from torch import nn

    from steps.models import torchnet

    torch.manual_seed(0)
    net, start, results = nn.Sequential(nn.Linear(4, 3)), threading.Barrier(4), []

    def export() -> None:
        start.wait(timeout=10)
        for _ in range(5):
            try:
                results.append(torchnet.to_onnx(net, 4, "y"))
            except Exception as err:  # noqa: BLE001 - what failed is the assertion's message
                results.append(repr(err))

    threads = [threading.Thread(target=export) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20 and len(set(results)) == 1 and isinstance(results[0], bytes)
