"""cairn's tabular models against scikit-learn's, fitted on the same split, in the same run.

    python bench/sklearn_parity.py [WORKLOAD ...]

For each tabular workload (default: every one whose model has a scikit-learn counterpart) it
brings `evaluate@<workload>` up to date with `dvc repro`, reads cairn's test metric from
data/<w>/evaluate/metrics.json, fits the counterpart on data/<w>/split/train/ with the
same features, encoding and normalisation, and scores it on the same test rows. A classifier
is compared at threshold 0.5 (cairn reports that figure beside a tuned one), a regression by
RMSE. Prints a Markdown table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from steps import models  # noqa: E402


def counterpart(model: dict, train: dict):
    """The scikit-learn estimator that fits what cairn's model fits."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier

    name = model["name"]
    if name == "logistic":  # unpenalised, as cairn's (weight_decay 0)
        return LogisticRegression(C=np.inf if not train.get("weight_decay") else 1.0, max_iter=10_000)
    if name == "linear":
        return LinearRegression()
    if name == "forest":
        return RandomForestClassifier(
            n_estimators=model["trees"],
            max_depth=model.get("max_depth"),
            min_samples_leaf=model.get("min_samples_leaf", 1),
            random_state=train["seed"],
        )
    if name == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=tuple(model["hidden"]),
            max_iter=train["epochs"] * 10,
            batch_size=train["batch_size"],
            learning_rate_init=train["lr"],
            random_state=train["seed"],
        )
    return None


def compare(workload: str, params: dict) -> dict | None:
    estimator = counterpart(params["model"], params["train"])
    if estimator is None or params["schema"].get("image"):
        return None
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", f"evaluate@{workload}"], cwd=ROOT, check=True)
    split = ROOT / "data" / workload / "split"
    sets = {name: pq.read_table(split / name) for name in ("train", "test")}
    spec = json.loads((ROOT / "data" / workload / "train" / "model.json").read_text())
    x = {k: models.features(t, spec["schema"], spec["encoding"]).astype(np.float64) for k, t in sets.items()}
    mean, std = x["train"].mean(axis=0), x["train"].std(axis=0)
    std[std == 0] = 1.0
    z = {k: (v - mean) / std for k, v in x.items()}
    label = params["schema"]["label"]
    metrics = json.loads((ROOT / "data" / workload / "evaluate" / "metrics.json").read_text())
    if spec["task"] == "classification":
        y = {k: models.labels(t, label, spec["classes"]) for k, t in sets.items()}
        estimator.fit(z["train"], y["train"])
        theirs = float((estimator.predict(z["test"]) == y["test"]).mean())
        ours = metrics.get("accuracy_at_0_5", metrics["accuracy"])
        return {"metric": "accuracy at 0.5", "cairn": ours, "scikit-learn": theirs, "better": "higher"}
    y = {k: t.column(label).to_numpy(zero_copy_only=False).astype(np.float64) for k, t in sets.items()}
    estimator.fit(z["train"], y["train"])
    theirs = float(np.sqrt(((estimator.predict(z["test"]) - y["test"]) ** 2).mean()))
    return {"metric": "rmse", "cairn": metrics["rmse"], "scikit-learn": theirs, "better": "lower"}


def main() -> None:
    workloads = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]
    chosen = sys.argv[1:] or list(workloads)
    print("| workload | model | metric | cairn | scikit-learn | cairn - scikit-learn |\n|---|---|---|---|---|---|")
    for name in chosen:
        row = compare(name, workloads[name])
        if row is not None:
            print(
                f"| {name} | {workloads[name]['model']['name']} | {row['metric']} ({row['better']} is better) | "
                f"{row['cairn']:.4f} | {row['scikit-learn']:.4f} | {row['cairn'] - row['scikit-learn']:+.4f} |"
            )


if __name__ == "__main__":
    main()
