"""steps/arrow.py: arrays built and read from their buffers equal pyarrow's own, and scoring,
which uses them, never imports pandas (0.2 s of every run that scores one new partition)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from onnx import TensorProto, helper

from steps import arrow

ROOT = Path(__file__).resolve().parents[1]

PYTHON_VALUES = [
    (["a", None, "", "é ü", "x" * 300], pa.string()),
    ([None, None], pa.string()),
    ([], pa.string()),
    ([b"\x00" * 16, None, bytes(range(16))], pa.binary(16)),
    ([1.5, None, -0.0, float("nan"), 1e300], pa.float64()),
    ([3, None, -(2**40)], pa.int64()),
    ([7, None], pa.int32()),
    ([True, None, False, True], pa.bool_()),
]


@pytest.mark.parametrize(("values", "type"), PYTHON_VALUES, ids=lambda v: str(v)[:20])
def test_an_array_from_python_values_equals_pyarrows(values: list, type: pa.DataType):
    built = arrow.array(values, type)
    built.validate(full=True)
    assert built.type == type and repr(built.to_pylist()) == repr(pa.array(values, type).to_pylist())  # NaN, -0.0
    assert built.null_count == sum(v is None for v in values)
    for value in values:
        assert repr(arrow.scalar(value, type).as_py()) == repr(pa.scalar(value, type).as_py())


@pytest.mark.parametrize(
    "values",
    [
        np.arange(10, dtype=np.int64),
        np.linspace(0, 1, 7, dtype=np.float32),
        np.array([True, False] * 9),
        np.arange(20, dtype=np.float64)[::3],
        np.zeros(0, np.int32),
        np.array([1, 2], np.uint8),
    ],  # fmt: skip
    ids=lambda v: f"{v.dtype}[{len(v)}]",
)
def test_an_array_from_numpy_equals_pyarrows(values: np.ndarray):
    built = arrow.numbers(values)
    built.validate(full=True)
    assert built.equals(pa.array(values))


def test_an_array_from_numpy_with_a_validity_mask_equals_pyarrows():
    built = arrow.numbers(np.array([1.5, 0.0, -0.0, 7.0]), valid=np.array([True, False, True, True]))
    built.validate(full=True)
    assert built.equals(pa.array([1.5, None, -0.0, 7.0], pa.float64())) and built.null_count == 1
    assert arrow.numbers(np.array([2.0]), valid=np.array([True])).buffers()[0] is None  # no nulls: no bitmap


def _columns() -> list[pa.Array | pa.ChunkedArray]:
    floats = pa.array([0.5, None, 2.0, 3.0, None, 5.0], pa.float64())
    ints = pa.array([1, 2, None, 4, 5, 6], pa.int64())
    bools = pa.array([True, False, True, True, False, False, True, False, True, True], pa.bool_())
    plain = pa.array(np.arange(12, dtype=np.float32))
    return [
        floats, floats.slice(1, 4), ints, ints.slice(3), pa.array([1, 2, 3], pa.int16()),
        bools, bools.slice(3, 6), floats.is_null(), plain, plain.slice(5, 3),
        pa.chunked_array([plain]), pa.chunked_array([plain.slice(0, 4), plain.slice(9)]),
        pa.chunked_array([], pa.float32()), pa.chunked_array([floats, ints.cast(pa.float64())]),
        pa.array([], pa.int64()), pa.array(["a", None]),  # text: pyarrow's own way
    ]  # fmt: skip


@pytest.mark.parametrize("column", _columns(), ids=lambda c: f"{type(c).__name__}<{c.type}>[{len(c)}]")
def test_to_numpy_reads_a_column_as_pyarrow_does(column: pa.Array | pa.ChunkedArray):
    ours = arrow.to_numpy(column)
    theirs = column.to_numpy(zero_copy_only=False) if len(column) or isinstance(column, pa.Array) else None
    if theirs is None:  # pyarrow gives an empty chunked array's numpy as its type
        theirs = np.empty(0, column.type.to_pandas_dtype())
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def _softmax_model(n_features: int, n_classes: int) -> bytes:
    """features (rows, n_features) float32 -> probabilities (rows, n_classes): a linear softmax."""
    weights = np.random.default_rng(0).normal(size=(n_features, n_classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],  # fmt: skip
        "softmax",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


SCORE_BOTH = """
import json, sys
from pathlib import Path
from steps.score import score
folder, out = Path(sys.argv[1]), {}
for name in ("images.parquet", "loans.csv"):
    spec = json.loads((folder / f"{name}.spec.json").read_text())
    onnx = (folder / f"{name}.onnx").read_bytes()
    _, quarantined, by_reason, _ = score(name, (folder / name).read_bytes(), spec, onnx, name, 1)
    out[name] = {"reasons": by_reason, "quarantined": quarantined.num_rows}
out["pandas imported"] = "pandas" in sys.modules
print(json.dumps(out))
"""


def test_scoring_images_and_dirty_text_does_not_import_pandas(tmp_path: Path):
    """Parquet images (a missing image, a pixel out of range) and a dirty CSV export (a malformed
    line, a repeated header, money and ranges to parse, a category one-hot encoded): every
    conversion of the scoring path, in a fresh process."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]
    images = np.random.default_rng(1).random((6, 784), dtype=np.float32)
    images[2, 5] = 2.0
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(images.ravel()), 784)
    pixels = pa.array([None if i == 4 else row for i, row in enumerate(pixels.to_pylist())], pixels.type)
    pq.write_table(pa.table({"pixels": pixels}), tmp_path / "images.parquet")
    mnist = {"schema": params["mnist"]["schema"], "task": "classification", "classes": list(range(10))}
    (tmp_path / "loans.csv").write_text(
        "fico_range,int_rate,loan_amount,annual_income,purpose\n"
        '700-704,12.5%,"$1,200.00","$50,000.00",CREDIT_CARD\n'
        "650-654,n/a,$900,$20000,educational\n"
        "fico_range,int_rate,loan_amount,annual_income,purpose\n"
        "720-724,7%,$5000,$90000\n"
        "800-804,5%,$5000,$90000,unheard_of\n"
    )
    levels = ["credit_card", "educational"]
    loans = {"schema": params["loans"]["schema"], "task": "classification", "classes": ["0", "1"], "threshold": 0.5,
             "encoding": {"columns": params["loans"]["schema"]["features"], "levels": {"purpose": levels}}}  # fmt: skip
    for name, spec, n in (("images.parquet", mnist, 784), ("loans.csv", loans, 4 + len(levels))):
        (tmp_path / f"{name}.spec.json").write_text(json.dumps(spec))
        (tmp_path / f"{name}.onnx").write_bytes(_softmax_model(n, len(spec["classes"])))
        onnx.checker.check_model(onnx.load_from_string((tmp_path / f"{name}.onnx").read_bytes()))
    result = subprocess.run([sys.executable, "-c", SCORE_BOTH, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["images.parquet"] == {"reasons": {"missing value": 1, "out of range": 1}, "quarantined": 2}
    assert found["loans.csv"]["reasons"] == {"missing value": 1, "repeated header line": 1, "unreadable line": 1}
    assert found["pandas imported"] is False
