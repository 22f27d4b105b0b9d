"""Logistic regression on separable data: scikit-learn's breast cancer set (569 rows, 30
features, ships with scikit-learn) is linearly separable on its train rows. Unpenalised
(``weight_decay: 0``, the loans template) the fit says so; with ``weight_decay`` left out it is
scikit-learn's default ``LogisticRegression()`` (C=1), weights and probabilities alike."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from flows import config
from steps import models, train
from steps.models import logistic

FEATURES = [f"f{i}" for i in range(30)]
SCHEMA = {"key": None, "label": "diagnosis", "features": FEATURES, "categorical": [], "parse": {}, "image": None,
          "range": None}  # fmt: skip
MODEL = config.model_settings(name="logistic", normalize="feature")
PARAMS = config.Train(seed=7, device="cpu", epochs=60, batch_size=0, optimizer="lbfgs", lr=0.0).model_dump()


def _sets(x: np.ndarray, labels: np.ndarray) -> dict[str, pa.Table]:
    table = pa.table({name: x[:, i] for i, name in enumerate(FEATURES)} | {"diagnosis": labels})
    fold = np.arange(len(table)) % 5  # 60 % train, 20 % validation, 20 % test
    return {name: table.filter(pa.array(np.isin(fold, f))) for name, f in (("train", [2, 3, 4]), ("val", [1]),
                                                                            ("test", [0]))}  # fmt: skip


@pytest.fixture(scope="module")
def cancer() -> dict[str, pa.Table]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return _sets(data.data, np.where(data.target == 1, "benign", "malignant"))


def _fit(sets: dict[str, pa.Table], **params):
    fitted = train.train(sets["train"], sets["val"], SCHEMA, MODEL, PARAMS | params)
    x = {k: models.features(t, SCHEMA, fitted.spec["encoding"]) for k, t in sets.items()}
    y = {k: models.labels(t, "diagnosis", fitted.spec["classes"]) for k, t in sets.items()}
    return fitted, x, y


def test_separable_rows_with_no_penalty_are_said_to_be_separable(cancer):
    fitted, x, y = _fit(cancer, weight_decay=0.0)
    (warning,) = fitted.spec["warnings"]
    assert warning.startswith(f"the {len(y['train'])} train rows are linearly separable")
    assert "leave train.weight_decay out for scikit-learn's default (C=1, here weight_decay 0.00587)" in warning
    # what it warns of is real: the weights ran away, every train row is classified right
    assert np.abs(logistic.coefficients(fitted)["weights"]).max() > 20
    assert (logistic.predict(fitted, x["train"]).argmax(1) == y["train"]).all()


def test_an_unset_weight_decay_is_scikit_learns_default_logistic_regression(cancer):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    fitted, x, y = _fit(cancer, weight_decay=None)  # the key left out of params.yaml
    n = len(y["train"])
    assert fitted.spec["weight_decay"]["value"] == pytest.approx(2 / n)
    assert "warnings" not in fitted.spec
    z = {k: (v.astype(np.float64) - fitted.arrays["mean"]) / fitted.arrays["std"] for k, v in x.items()}
    sk = LogisticRegression().fit(z["train"], y["train"])  # scikit-learn's defaults: C=1, L2, lbfgs
    coefs = logistic.coefficients(fitted)
    np.testing.assert_allclose(coefs["weights"], sk.coef_[0], atol=0.03)
    assert coefs["bias"] == pytest.approx(sk.intercept_[0], abs=0.03)
    ours, theirs = logistic.predict(fitted, x["test"])[:, 1], sk.predict_proba(z["test"])[:, 1]
    assert np.abs(ours - theirs).max() < 0.01
    assert roc_auc_score(y["test"], ours) == pytest.approx(roc_auc_score(y["test"], theirs), abs=1e-3)
    assert roc_auc_score(y["test"], ours) > 0.99


def test_the_default_is_scikit_learns_for_three_classes_too():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.5, (3, 30))
    labels = rng.integers(0, 3, 600)
    sets = _sets(centres[labels] + rng.normal(0, 1, (600, 30)), np.array(["a", "b", "c"])[labels])
    fitted, x, y = _fit(sets, weight_decay=None)
    assert fitted.spec["weight_decay"]["value"] == pytest.approx(1 / len(y["train"]))
    z = (x["train"].astype(np.float64) - fitted.arrays["mean"]) / fitted.arrays["std"]
    sk = LogisticRegression().fit(z, y["train"])
    np.testing.assert_allclose(fitted.arrays["net.0.weight"], sk.coef_, atol=0.03)


def test_overlapping_classes_with_no_penalty_draw_no_warning():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 600)
    x = rng.normal(0, 1, (600, 30)) + labels[:, None] * 0.15  # a weak signal, classes overlap
    fitted, _, _ = _fit(_sets(x, np.array(["no", "yes"])[labels]), weight_decay=0.0)
    assert "warnings" not in fitted.spec
