"""cairn's tabular models against scikit-learn's, fitted on the same split, in the same run.

    python bench/sklearn_parity.py [--as-is] [--separable] [WORKLOAD ...]

For each tabular workload (default: every one whose model has a scikit-learn counterpart) it
brings `evaluate@<workload>` up to date with `dvc repro` (with --as-is: takes the outputs as they
are, running nothing), reads cairn's test metric from
data/<w>/evaluate/metrics.json, fits the counterpart on data/<w>/split/train/ with the
same features, encoding and normalisation, and scores it on the same test rows. A classifier
is compared at threshold 0.5 (cairn reports that figure beside a tuned one), a regression by
RMSE. A logistic regression is also set beside scikit-learn's defaults (``LogisticRegression()``,
C=1), which is what cairn fits when ``train.weight_decay`` is left out. Prints a Markdown table.

--separable adds scikit-learn's breast cancer set (ships with scikit-learn; its train rows are
linearly separable): cairn's logistic regression unpenalised and with the default penalty,
against scikit-learn's ``penalty=None`` and defaults, by test ROC AUC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from flows import config  # noqa: E402
from steps import models  # noqa: E402


def counterpart(model: dict, train: dict):
    """The scikit-learn estimator that fits what cairn's model fits."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier

    model = config.model_settings(**model)  # the settings cairn's model trains with, defaults included
    name = model["name"]
    if name == "logistic":  # as cairn's: unpenalised with weight_decay 0, C=1 when it is left out
        if "weight_decay" not in train:
            return LogisticRegression(max_iter=10_000)
        if not train["weight_decay"]:
            return LogisticRegression(C=np.inf, max_iter=10_000)
        return None  # another penalty: compare with the C it maps to by hand
    if name == "linear":
        return LinearRegression()
    if name == "forest":
        return RandomForestClassifier(
            n_estimators=model["trees"],
            max_depth=model["max_depth"],
            min_samples_leaf=model["min_samples_leaf"],
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


def compare(workload: str, params: dict, repro: bool = True) -> dict | None:
    from sklearn.linear_model import LogisticRegression

    estimator = counterpart(params["model"], params["train"])
    if estimator is None or params["schema"].get("image"):
        return None
    if repro:
        # dvc.yaml's commands run `python` through the shell: this venv's, as `make` sets PATH
        env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", f"evaluate@{workload}"], cwd=ROOT, env=env,
                       check=True)  # fmt: skip
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

        def accuracy(model) -> float:
            return float((model.fit(z["train"], y["train"]).predict(z["test"]) == y["test"]).mean())

        theirs = accuracy(estimator)
        defaults = accuracy(LogisticRegression()) if params["model"]["name"] == "logistic" else None
        ours = metrics.get("accuracy_at_0_5", metrics["accuracy"])
        return {"metric": "accuracy at 0.5", "cairn": ours, "scikit-learn": theirs, "better": "higher",
                "defaults": defaults}  # fmt: skip
    y = {k: t.column(label).to_numpy(zero_copy_only=False).astype(np.float64) for k, t in sets.items()}
    estimator.fit(z["train"], y["train"])
    theirs = float(np.sqrt(((estimator.predict(z["test"]) - y["test"]) ** 2).mean()))
    return {"metric": "rmse", "cairn": metrics["rmse"], "scikit-learn": theirs, "better": "lower", "defaults": None}


def separable() -> list[dict]:
    """Breast cancer (569 rows, 30 features), rows dealt 3:1:1 to train, validation and test by
    row number: cairn's logistic regression and scikit-learn's, unpenalised and by default."""
    import pyarrow as pa
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from flows import config
    from steps import train
    from steps.models import logistic

    data = load_breast_cancer()
    names = [f"x{i}" for i in range(data.data.shape[1])]
    table = pa.table({n: data.data[:, i] for i, n in enumerate(names)} | {"y": data.target.astype(str)})
    fold = np.arange(len(table)) % 5
    sets = {k: table.filter(pa.array(np.isin(fold, f))) for k, f in (("train", [2, 3, 4]), ("val", [1]), ("test", [0]))}
    schema = {"key": None, "label": "y", "features": names, "categorical": [], "parse": {}, "image": None,
              "range": None}  # fmt: skip
    # The train section as a stage hands it to the step: through params' typed model, defaults filled in.
    params = config.Train(seed=7, device="cpu", epochs=60, batch_size=0, optimizer="lbfgs", lr=0.0).model_dump()
    model = config.Model(name="logistic", normalize="feature").model_dump()
    rows = []
    for label, decay, c in (("weight_decay 0 / penalty=None", 0.0, np.inf), ("unset / defaults (C=1)", None, 1.0)):
        fitted = train.train(sets["train"], sets["val"], schema, model, params | {"weight_decay": decay})
        x = {k: models.features(t, schema, fitted.spec["encoding"]) for k, t in sets.items()}
        y = {k: models.labels(t, "y", fitted.spec["classes"]) for k, t in sets.items()}
        z = {k: (v.astype(np.float64) - fitted.arrays["mean"]) / fitted.arrays["std"] for k, v in x.items()}
        sk = LogisticRegression(C=c, max_iter=10_000).fit(z["train"], y["train"])
        rows.append({"fit": label, "cairn": roc_auc_score(y["test"], logistic.predict(fitted, x["test"])[:, 1]),
                     "scikit-learn": roc_auc_score(y["test"], sk.predict_proba(z["test"])[:, 1]),
                     "weight": float(np.abs(logistic.coefficients(fitted)["weights"]).max()),
                     "warned": bool(fitted.spec.get("warnings"))})  # fmt: skip
    return rows


def main() -> None:
    import argparse

    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: every tabular workload")
    cli.add_argument("--as-is", action="store_true", help="take data/<w>/ as it is: run no `dvc repro`")
    cli.add_argument("--separable", action="store_true", help="add the breast cancer set (separable train rows)")
    args = cli.parse_args()
    repro, with_separable = not args.as_is, args.separable
    workloads = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]
    chosen = args.workloads or list(workloads)
    print("| workload | model | metric | cairn | scikit-learn, same settings | cairn - scikit-learn "
          "| scikit-learn defaults |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for name in chosen:
        row = compare(name, workloads[name], repro)
        if row is not None:
            defaults = "" if row["defaults"] is None else f"{row['defaults']:.4f}"
            print(
                f"| {name} | {workloads[name]['model']['name']} | {row['metric']} ({row['better']} is better) | "
                f"{row['cairn']:.4f} | {row['scikit-learn']:.4f} | {row['cairn'] - row['scikit-learn']:+.4f} | "
                f"{defaults} |"
            )
    if with_separable:
        print("\nbreast cancer (separable train rows), test ROC AUC:\n")
        print("| cairn / scikit-learn | cairn | scikit-learn | cairn - scikit-learn | cairn's largest weight | "
              "cairn warned |\n|---|---|---|---|---|---|")  # fmt: skip
        for row in separable():
            print(f"| {row['fit']} | {row['cairn']:.4f} | {row['scikit-learn']:.4f} | "
                  f"{row['cairn'] - row['scikit-learn']:+.4f} | {row['weight']:.3g} | {row['warned']} |")  # fmt: skip


if __name__ == "__main__":
    main()
