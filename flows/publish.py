"""publish flow: portable model files checked against the native model, model card, lineage."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from flows import config
from flows.storage.files import load_yaml, replace_dir
from flows.storage.model import load_model
from flows.storage.tables import read_table, require
from flows.tracking import attach, log, report, run_record, stage_flow
from steps import models
from steps import publish as steps

LOCK_FILE = Path("dvc.lock")
MODEL_FILES = ("model.safetensors", "model.json")  # of train's outputs, what publish reads
EVALUATED = ("metrics.json", "details.json")  # of evaluate's


@stage_flow("publish")
def publish(workload: str, raw: Path, ingested: Path, clean: Path, split: Path, train: Path, evaluate: Path,
            out: Path) -> dict:  # fmt: skip
    """Write ``out``/ model.onnx (+ encoder/decoder for autoencoders), coefficients.json (linear
    models), model.safetensors, model.json, model_card.md, lineage.json.

    ``raw``, ``ingested`` and ``clean`` are read for the lineage alone (their hashes, which
    dvc.lock holds): declared, so that what lineage.json says is what publish was run on.

    Refuses (PublishError, nothing written) when onnxruntime's predictions on the test set, or
    the JSON coefficients computed in numpy, differ from the native model beyond the params'
    tolerances.
    """
    params = config.workload(workload)
    tolerance = params.settings("publish")
    fitted = load_model(train)
    spec = fitted.spec
    module = models.module(spec["model"]["name"])
    test = read_table(split / "test")
    x = models.features(test, params.settings("schema"), spec["encoding"])
    native = module.predict(fitted, x)
    is_classifier = spec["task"] == "classification"
    threshold = spec.get("threshold")

    onnx_files = module.to_onnx(fitted)
    contract = steps.input_contract(params.settings("schema"), spec)
    output = steps.OUTPUTS[spec["task"]]
    portable = steps.onnx_predict(onnx_files["model.onnx"], x, output)
    checks = {"ONNX (onnxruntime)": steps.parity(native, portable, threshold, is_classifier)}
    extra: dict[str, str] = {}
    if hasattr(module, "coefficients"):
        coefs = module.coefficients(fitted)
        from_json = module.predict_coefficients(coefs, x)
        checks["coefficients.json (numpy)"] = steps.parity(native, from_json, threshold, is_classifier)
        extra["coefficients.json"] = json.dumps(coefs | {"input": contract}, indent=2) + "\n"
    for what, result in checks.items():
        steps.check_parity(what, result, tolerance["min_label_agreement"], tolerance["max_diff"],
                           spec.get("warnings", []))  # fmt: skip

    lock = load_yaml(require(LOCK_FILE, "DVC lock file").read_text())
    read = [raw, ingested, clean, split, *(train / name for name in MODEL_FILES), *(evaluate / n for n in EVALUATED)]
    lineage = steps.lineage(lock, workload, params, [path.as_posix() for path in read])
    lineage_json = json.dumps(lineage | {"checks": checks}, indent=2, sort_keys=True, default=str) + "\n"
    # What a runtime shows of the model (Netron, onnxruntime's modelmeta): enough to use it right
    # and to find the run that made it.
    metadata = {
        "workload": workload,
        "task": spec["task"],
        "label": params.schema_.label,
        "feature_names": spec.get("feature_names"),
        "classes": spec.get("classes"),
        "input_contract": contract,
        "lineage_sha256": hashlib.sha256(lineage_json.encode()).hexdigest(),
    }
    onnx_files = {name: steps.onnx_with_metadata(content, metadata) for name, content in onnx_files.items()}
    metrics, details = (json.loads(require(evaluate / name, "evaluate's " + name).read_text()) for name in EVALUATED)
    split_report = json.loads(require(split / "report.json", "split report").read_text())
    with replace_dir(out) as tmp:
        for name, content in onnx_files.items():
            (tmp / name).write_bytes(content)
        for name, text in extra.items():
            (tmp / name).write_text(text)
        for name in MODEL_FILES:
            shutil.copyfile(train / name, tmp / name)
        (tmp / "lineage.json").write_text(lineage_json)
        files = {p.name: p.stat().st_size for p in tmp.iterdir()}
        card = steps.model_card(workload, spec, metrics, details, checks, files, lineage, split_report, contract)
        (tmp / "model_card.md").write_text(card)

    plots = {name.split(".")[0]: evaluate / name for name in ("figure.png", "loss.png")}
    attach(f"model-card-{workload}", card, plots)
    timing = steps.latency(onnx_files["model.onnx"], x, output)
    run_record(workload, "publish", {"latency_ms": timing, "files": files})
    log().info(
        "publish@%s: onnxruntime latency (ms) %s", workload, json.dumps({k: round(v, 3) for k, v in timing.items()})
    )
    summary = {
        "onnx_bytes": len(onnx_files["model.onnx"]),
        **{f"{k} max_diff": c["max_diff"] for k, c in checks.items()},
    }
    report(
        f"publish-{workload}", f"publish@{workload}", summary | {f"latency {k}": round(v, 3) for k, v in timing.items()}
    )
    return summary
