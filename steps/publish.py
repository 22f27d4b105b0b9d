"""publish: the portable model (ONNX), checked against the native one, its card and lineage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from steps import BadInput
from steps.models import decide


class PublishError(BadInput):
    """The portable model does not behave like the native one; nothing is published."""


OUTPUTS = {"classification": "probabilities", "regression": "prediction", "reconstruction": "reconstruction"}


def onnx_predict(onnx_bytes: bytes, x: np.ndarray, output: str) -> np.ndarray:
    """``output`` of the ONNX model under onnxruntime (CPU), fed ``x`` as 'features'."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session.run([output], {"features": x.astype(np.float32)})[0]


def parity(native: np.ndarray, portable: np.ndarray, threshold: float | None = None, classes: bool = True) -> dict:
    """How alike two predictions are: share of equal labels (classifiers) and the largest
    difference, relative to the largest native value where that exceeds 1."""
    native, portable = np.asarray(native, np.float64), np.asarray(portable, np.float64).reshape(native.shape)
    scale = max(1.0, float(np.abs(native).max())) if native.size else 1.0
    result = {
        "rows": int(len(native)),
        "max_diff": float(np.abs(native - portable).max()) / scale if native.size else 0.0,
    }
    if classes:
        result["label_agreement"] = float((decide(native, threshold) == decide(portable, threshold)).mean())
    return result


def check_parity(what: str, result: dict, min_label_agreement: float, max_diff: float,
                 warnings: Sequence[str] = ()) -> None:  # fmt: skip
    """Raises PublishError when ``what`` (the ONNX model, the JSON coefficients) disagrees with
    the native model beyond the tolerances. The error ends with ``warnings``, what training said
    of the model (model.json), the likely cause: a fit on separable rows saturates, its
    probabilities are 0 or 1 and its tuned threshold 1.0, where float32 and float64 disagree."""
    end = "".join(f"; train warned: {warning}" for warning in warnings) or "."
    agreement = result.get("label_agreement", 1.0)
    if agreement < min_label_agreement:
        raise PublishError(
            f"publish: {what} and native labels agree on {agreement:.4%} of {result['rows']} test rows; "
            f"required {min_label_agreement:.4%}. Not published{end}"
        )
    if result["max_diff"] > max_diff:
        raise PublishError(
            f"publish: {what} predictions differ from native by up to {result['max_diff']:.3g}; "
            f"allowed {max_diff:.3g}. Not published{end}"
        )


def latency(onnx_bytes: bytes, x: np.ndarray, output: str, repeats: int = 200) -> dict[str, float]:
    """onnxruntime latency in ms, p50 and p99: one row, and a batch of 10 000 rows."""
    import time

    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    row = x[:1].astype(np.float32)
    batch = np.resize(x.astype(np.float32), (10_000, x.shape[1]))
    out = {}
    for name, feed, n in (("row", row, repeats), ("batch_10000", batch, max(5, repeats // 20))):
        session.run([output], {"features": feed})  # warm-up
        times = []
        for _ in range(n):
            started = time.perf_counter()
            session.run([output], {"features": feed})
            times.append((time.perf_counter() - started) * 1000)
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = (float(np.percentile(times, q)) for q in (50, 99))
    return out


def lineage(lock: dict[str, Any], workload: str, params: dict[str, Any], chain: Sequence[str]) -> dict[str, Any]:
    """The data ``workload``'s model came from, back to the raw data: for each upstream stage,
    the DVC hashes (from a parsed ``dvc.lock``) of those of its deps and outs that lie within
    ``chain``, publish's own declared data deps, and the params.

    Only those: publish's outputs are then a function of its declared deps. A stage's code hashes,
    or an output publish does not read (train's loss history, evaluate's figures, which differ in
    bytes from one CPU to another), would change lineage.json while DVC, seeing no dep change,
    keeps the old one: the published bytes would then depend on history, not on the inputs. The
    code is the git revision, which the model registry records at promotion."""
    chain = [path.rstrip("/") for path in chain]

    def within(path: str) -> bool:
        return any(path == top or path.startswith(top + "/") for top in chain)

    stages, seen = {}, set()
    for name in ("ingest", "clean", "split", "train", "evaluate"):
        entry = lock.get("stages", {}).get(f"{name}@{workload}")
        if entry is None:
            raise PublishError(f"publish: dvc.lock has no stage '{name}@{workload}'; run it before publish")
        stages[name] = {
            kind: {d["path"]: d.get("md5") for d in entry.get(kind, []) if within(d["path"])}
            for kind in ("deps", "outs")
        }
        seen |= {path for record in stages[name].values() for path in record}
    if missing := [top for top in chain if not any(p == top or p.startswith(top + "/") for p in seen)]:
        raise PublishError(f"publish: dvc.lock records none of {', '.join(missing)} for '{workload}'")
    return {"workload": workload, "params": params, "stages": stages}


# How clean turns each kind of raw text into the number the model reads (steps/clean.py).
PARSE_RULES = {
    "number": "a decimal number: '42.5' -> 42.5",
    "percent": "a percentage, the '%' dropped: '12.5%' -> 12.5",
    "money": "an amount, '$' and thousands separators dropped: '$12,000.00' -> 12000.0",
    "range_mid": "the middle of a range: '700-704' -> 702.0; a single number stays itself",
    "category": "a category: trimmed, lower-cased, runs of spaces and '_' made one '_'",
}


def input_contract(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """How a raw record becomes the model's input row, in words and data a client in another
    language can follow without reading cairn: the label, each raw column's parsing, the one-hot
    naming of categories, and what becomes of missing or unseen values."""
    from steps.schema import MISSING

    if schema.get("image"):
        image = schema["image"]
        lo, hi = schema.get("range") or [None, None]
        return {
            "label": schema["label"],
            "image": {"column": image["column"], "shape": image["shape"], "order": "row-major", "range": [lo, hi]},
        }
    parse = schema.get("parse") or {}
    categorical = set(schema.get("categorical") or [])
    columns = []
    for column in spec["encoding"]["columns"]:
        kind = "category" if column in categorical else parse.get(column, "number")
        entry = {"column": column, "kind": kind, "rule": PARSE_RULES[kind]}
        if column in spec["encoding"]["levels"]:
            entry["one_hot"] = [f"{column}={level}" for level in spec["encoding"]["levels"][column]]
        columns.append(entry)
    return {
        "label": schema["label"],
        "key": schema.get("key"),
        "columns": columns,
        "features": "the model's inputs in order: each number column, each category as its one_hot names",
        "one_hot": "feature 'column=level' is 1.0 when the parsed category equals level, else 0.0; "
        "a level not seen in training gives all zeros",
        "missing": f"a blank cell or one of {sorted(MISSING - {''})} (any case) is missing: cairn quarantines "
        "such rows instead of predicting",
    }


def onnx_with_metadata(onnx_bytes: bytes, props: dict[str, Any]) -> bytes:
    """``onnx_bytes`` with ``props`` as the model's metadata_props (values as JSON unless text)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    return model.SerializeToString()


def model_card(
    workload: str,
    spec: dict[str, Any],
    metrics: dict[str, Any],
    details: dict[str, Any],
    checks: dict[str, dict],
    files: dict[str, int],
    lineage_record: dict[str, Any],
    split_report: dict[str, Any],
    contract: dict[str, Any] | None = None,
) -> str:
    """The model card in Markdown: what the model is, on what data, how good, from where, and
    how a raw record becomes its input (``contract``, from input_contract)."""
    schema = spec["schema"]
    output = OUTPUTS[spec["task"]]
    inputs = (
        f"`{schema['image']['column']}` as {spec['n_features']} float32 pixels "
        f"({'×'.join(map(str, schema['image']['shape']))}, row-major)"
        if schema.get("image")
        else ", ".join(f"`{f}`" for f in spec["feature_names"])
    )
    outputs = {
        "classification": f"float32 `[batch, {len(spec['classes'] or [])}]`, probabilities of the classes "
        + ", ".join(f"`{c}`" for c in spec["classes"] or [])
        + (
            f"; predict `{spec['classes'][1]}` when its probability ≥ {spec['threshold']:.4f} (chosen on validation)"
            if spec.get("threshold") is not None
            else ""
        ),
        "regression": f"float32 `[batch]`, the predicted `{schema['label']}` in its own units",
        "reconstruction": f"float32 `[batch, {spec['n_features']}]`, the input reconstructed",
    }[spec["task"]]
    scalar_rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items() if not isinstance(v, dict | list))
    per_class = "".join(
        f"\n| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for c, m in details.get("per_class", {}).items()
    )
    per_class_table = (
        f"\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|{per_class}" if per_class else ""
    )
    check_lines = "\n".join(
        f"- {what} vs native on {c['rows']} test rows: max difference {c['max_diff']:.2e}"
        + (f", labels agree on {c['label_agreement']:.4%}" if "label_agreement" in c else "")
        for what, c in checks.items()
    )
    file_lines = "\n".join(f"- `{name}`: {size:,} bytes" for name, size in sorted(files.items()))
    sets = " / ".join(f"{name} {info['rows']}" for name, info in split_report.items())
    raw = ", ".join(f"`{p}` ({h})" for p, h in lineage_record["stages"]["ingest"]["deps"].items())  # the raw data
    return f"""# Model card: {workload}

**Model**: `{spec["model"]["name"]}` ({spec["task"]}) {json.dumps(spec["model"])}, trained by cairn.

**Input** `features`: float32 `[batch, {spec["n_features"]}]` of raw values (the model normalises), in this
order: {inputs}.

**Output** `{output}`: {outputs}.
{_contract_md(contract)}
## Files

{file_lines}

`model.onnx` runs in any ONNX runtime (onnxruntime, onnxruntime-go, ...); `coefficients.json`, where
present, holds the plain numbers and formula to compute a prediction in any language;
`model.safetensors` + `model.json` are the native arrays and the spec to rebuild them. Prediction
latency is measured at publish and kept in the run record `.cairn/runs/publish@{workload}.json` (and
the Prefect run's artifact), not here: a timing would change this file's hash on every run.

## Data

Rows: {sets}. Label column `{schema["label"]}`. Raw data: {raw}.

## Metrics (test holdout)

| metric | value |
|---|---|
{scalar_rows}{per_class_table}

## Portability checks

{check_lines}

## Lineage

Stages ingest → clean → split → train → evaluate with the DVC hashes of the data each one read and
wrote on the way to this model, and the params, in `lineage.json`; the model registry records the
git revision (the code) it was promoted at.
"""


def _contract_md(contract: dict[str, Any] | None) -> str:
    """The input contract as a Markdown section ('' for none or for images)."""
    if not contract or "columns" not in contract:
        return ""
    rows = "\n".join(
        f"| `{c['column']}` | {c['kind']} | {c['rule']} | {', '.join(f'`{n}`' for n in c.get('one_hot', [])) or '-'} |"
        for c in contract["columns"]
    )
    return f"""
## From a raw record to the input

Label column `{contract["label"]}`. Each raw column, in the order the features come:

| column | kind | parsing | one-hot features |
|---|---|---|---|
{rows}

{_sentence(contract["one_hot"])} {_sentence(contract["missing"])}
The same contract is in `coefficients.json` (`input`) and in `model.onnx`'s metadata (`input_contract`).
"""


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
