"""publish: the portable model (ONNX), checked against the native one, its card and lineage."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch

from steps import StepError

ONNX_OPSET = 17


class PublishError(StepError):
    """The portable model does not behave like the native one; nothing is published."""


def to_onnx(model: torch.nn.Module, n_features: int) -> bytes:
    """ONNX bytes of ``model``: input 'features' (batch, n_features) float32 -> 'probabilities'."""
    buf = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, n_features),),
        buf,
        input_names=["features"],
        output_names=["probabilities"],
        dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,  # the TorchScript exporter needs no onnxscript and is deterministic
    )
    return buf.getvalue()


def onnx_predict(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities from the ONNX model under onnxruntime (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"features": x.astype(np.float32)})[0]


def parity(native: np.ndarray, portable: np.ndarray) -> dict[str, float]:
    """How alike two probability matrices are: share of equal labels, max abs difference."""
    return {
        "rows": int(len(native)),
        "label_agreement": float((native.argmax(1) == portable.argmax(1)).mean()),
        "max_probability_diff": float(np.abs(native - portable).max()),
    }


def check_parity(result: dict[str, float], min_label_agreement: float, max_probability_diff: float) -> None:
    """Raises PublishError when the ONNX model disagrees with the native model too much."""
    if result["label_agreement"] < min_label_agreement:
        raise PublishError(
            f"publish: ONNX and native labels agree on {result['label_agreement']:.4%} of "
            f"{result['rows']} test rows; required {min_label_agreement:.4%}. Not published."
        )
    if result["max_probability_diff"] > max_probability_diff:
        raise PublishError(
            f"publish: ONNX probabilities differ from native by up to {result['max_probability_diff']:.3g}; "
            f"allowed {max_probability_diff:.3g}. Not published."
        )


def lineage(lock: dict[str, Any], workload: str, params: dict[str, Any], git_revision: str) -> dict[str, Any]:
    """The DVC hashes of every upstream stage of ``workload`` (deps and outs, back to the raw
    data), the params, and the code revision, from a parsed ``dvc.lock``."""
    stages = {}
    for name in ("ingest", "clean", "split", "train", "evaluate"):
        entry = lock.get("stages", {}).get(f"{name}@{workload}")
        if entry is None:
            raise PublishError(f"publish: dvc.lock has no stage '{name}@{workload}'; run it before publish")
        stages[name] = {
            "deps": {d["path"]: d.get("md5") for d in entry.get("deps", [])},
            "outs": {o["path"]: o.get("md5") for o in entry.get("outs", [])},
        }
    return {"workload": workload, "git_revision": git_revision, "params": params, "stages": stages}


def model_card(
    workload: str,
    spec: dict[str, Any],
    metrics: dict[str, Any],
    parity_result: dict[str, float],
    lineage_record: dict[str, Any],
    split_report: dict[str, Any],
) -> str:
    """The model card in Markdown: what the model is, on what data, how good, from where."""
    schema = spec["schema"]
    inputs = (
        f"`{schema['image']['column']}`: {spec['n_features']} float32 pixels "
        f"({'×'.join(map(str, schema['image']['shape']))}, row-major)"
        if schema.get("image")
        else ", ".join(f"`{f}`" for f in schema["features"])
    )
    per_class = "\n".join(
        f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for c, m in metrics["per_class"].items()
    )
    sets = " / ".join(f"{name} {info['rows']}" for name, info in split_report.items())
    raw = ", ".join(
        f"`{p}` ({h})" for p, h in lineage_record["stages"]["ingest"]["deps"].items() if p.startswith("data/")
    )
    agreement, max_diff = parity_result["label_agreement"], parity_result["max_probability_diff"]
    return f"""# Model card: {workload}

**Model**: `{spec["model"]["name"]}` {json.dumps(spec["model"])}, trained by cairn.
**Input** `features`: float32 `[batch, {spec["n_features"]}]`, raw values (the model normalises):
{inputs}.
**Output** `probabilities`: float32 `[batch, {len(spec["classes"])}]`, classes in this order:
{", ".join(f"`{c}`" for c in spec["classes"])}.

## Files

- `model.onnx`: the portable model (ONNX opset {ONNX_OPSET}); any ONNX runtime loads it (onnxruntime,
  onnxruntime-go, ...).
- `model.safetensors` + `model.json`: the native PyTorch weights and the spec to rebuild them.
- `lineage.json`: DVC hashes of every input back to the raw data, params, git revision.

## Data

Rows: {sets}. Label column `{schema["label"]}`. Raw data: {raw}.

## Metrics (test holdout, {metrics["n_test"]} rows)

accuracy **{metrics["accuracy"]:.4f}**, log loss {metrics["loss"]:.4f}, macro F1 {metrics["macro_f1"]:.4f}

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

## Portability check

ONNX (onnxruntime) vs native PyTorch on the {parity_result["rows"]} test rows: labels agree on
{agreement:.4%}, max probability difference {max_diff:.2e}.

## Lineage

git revision `{lineage_record["git_revision"]}`; stages ingest → clean → split → train → evaluate, their
DVC hashes in `lineage.json`.
"""
