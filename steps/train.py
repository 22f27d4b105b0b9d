"""train: turn train/val tables into arrays, fit the model that params name, and for a binary
classifier set the decision threshold (``train.threshold``: fixed, or tuned on the validation
set, never on test)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from steps import BadInput, models
from steps.models import Data, Epoch, Fitted, OnEpoch


def choose_threshold(rule: str | float, y: np.ndarray, p1: np.ndarray) -> float:
    """The probability of class 1 from which a binary classifier predicts class 1: a fixed value,
    or the cut that maximises F1 ('f1') or Youden's J = TPR - FPR ('youden') on (validation)
    labels ``y``. Tuned cuts follow a small validation set's noise: 0.5 is the default."""
    if not isinstance(rule, str):
        return float(rule)
    if rule == "youden":
        from sklearn.metrics import roc_curve

        if len(set(y.tolist())) < 2:
            return 0.5
        fpr, tpr, cuts = roc_curve(y, p1)
        return float(min(1.0, cuts[int(np.argmax(tpr - fpr))]))
    best, best_f1 = 0.5, -1.0
    for cut in np.unique(np.round(p1, 4)):
        predicted = p1 >= cut
        tp = float((predicted & (y == 1)).sum())
        f1 = 2 * tp / max(1.0, predicted.sum() + (y == 1).sum())
        if f1 > best_f1:
            best, best_f1 = float(cut), f1
    return best


def train(
    train_set: pa.Table,
    val_set: pa.Table,
    schema: dict[str, Any],
    model_params: dict[str, Any],
    params: dict[str, Any],
    on_epoch: OnEpoch | None = None,
    start: Fitted | None = None,
    resume: dict[str, Any] | None = None,
) -> Fitted:
    """Fit ``model_params['name']`` on ``train_set``, validating on ``val_set``.

    Category levels, normalisation and classes are fitted on train rows only. Returns the
    fitted model (spec + arrays) and its per-epoch history. Randomness comes from
    ``params['seed']`` alone; the global RNG is left as it was. With ``start`` (a champion),
    training starts from its weights when the architecture matches; ``spec['warm_start']``
    says whether it did and why. With ``resume`` (the ``fitted.state`` an interrupted run gave
    ``on_epoch``, for the same inputs) training goes on from there to the same result.
    """
    module = models.module(model_params["name"])
    label = schema["label"]
    classes = sorted(set(train_set.column(label).to_pylist())) if module.TASK == "classification" else None
    if classes is not None and len(classes) < 2:
        raise BadInput(
            f"train: the label '{label}' has {len(classes)} class(es) in the train rows "
            f"({', '.join(map(repr, classes)) or 'none'}); a classifier needs at least two"
        )
    encoding = models.fit_encoding(train_set, schema)
    x = models.features(train_set, schema, encoding)
    mean, std = models.fit_normalizer(x, model_params["normalize"])
    data = Data(
        x_train=x,
        y_train=models.targets(train_set, module.TASK, label, classes),
        x_val=models.features(val_set, schema, encoding),
        y_val=models.targets(val_set, module.TASK, label, classes),
        mean=mean,
        std=std,
        resume=resume,
    )
    spec = {
        "task": module.TASK,
        "model": dict(model_params),
        "n_features": int(x.shape[1]),
        "feature_names": encoding["names"],
        "encoding": encoding,
        "classes": classes,
        "schema": schema,
    }
    if start is not None:
        reason = warm_start_refusal(module, start.spec, spec)
        if reason is None:
            data.start = {k: v for k, v in start.arrays.items() if k.startswith("net.")}
        spec["warm_start"] = {"used": reason is None, "reason": reason or "same architecture"}
    fitted = module.fit(data, spec, params, on_epoch)
    if classes is not None and len(classes) == 2:
        rule = params["threshold"]
        fitted.spec["threshold"] = choose_threshold(rule, data.y_val, module.predict(fitted, data.x_val)[:, 1])
        fitted.spec["threshold_rule"] = rule
    return fitted


def warm_start_refusal(module, start_spec: dict[str, Any], spec: dict[str, Any]) -> str | None:
    """Why a model cannot start from ``start_spec``'s weights, or None when it can."""
    if not getattr(module, "WARM_START", False):
        return f"model {spec['model']['name']!r} cannot start from given weights"
    old, new = models.architecture(start_spec), models.architecture(spec)
    # Compare the model params these params give: a module may add implied ones (logistic: hidden []).
    old["model"] = {k: (old["model"] or {}).get(k) for k in new["model"]}
    if changed := [k for k in new if old[k] != new[k]]:
        return f"different {', '.join(changed)} from the champion's"
    return None


def history_csv(history: list[Epoch]) -> str:
    """The loss curves as CSV (a DVC plot); no timings, so equal runs give equal bytes."""
    with_accuracy = any(e.val_accuracy is not None for e in history)
    lines = ["epoch,train_loss,val_loss" + (",val_accuracy" if with_accuracy else "") + ",lr"]
    for e in history:
        accuracy = f",{e.val_accuracy:.6f}" if with_accuracy else ""
        lines.append(f"{e.epoch},{e.train_loss:.6f},{e.val_loss:.6f}{accuracy},{e.lr:.6g}")
    return "\n".join(lines) + "\n"
