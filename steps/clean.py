"""clean: validate ingested rows against the schema; bad rows go to quarantine with a reason.

No row disappears: rows in = rows kept + rows quarantined, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import StepError


class CleanError(StepError):
    """Data too broken to clean: more bad rows than params allow."""


@dataclass(frozen=True)
class Cleaned:
    kept: pa.Table
    quarantined: pa.Table  # the ingested columns plus 'reason'
    report: dict[str, Any]


# A reason is (kind, sentence): the kind is counted in the report, the sentence is stored.
Reason = tuple[str, str]


def _feature_reasons(values: np.ndarray, names: list[str], lo: float, hi: float) -> list[Reason | None]:
    """The first problem of each row of a (rows, features) float array, or None."""
    reasons: list[Reason | None] = [None] * len(values)
    checks = (
        (np.isnan(values), lambda c, v: ("missing value", f"missing or NaN value in column '{c}'")),
        (np.isinf(values), lambda c, v: ("infinite value", f"infinite value in column '{c}'")),
        (
            (values < lo) | (values > hi),
            lambda c, v: ("out of range", f"value {v:g} in column '{c}' outside [{lo:g}, {hi:g}]"),
        ),
    )
    with np.errstate(invalid="ignore"):
        for mask, say in checks:
            for row, col in zip(*np.nonzero(mask), strict=True):
                if reasons[row] is None:
                    reasons[row] = say(names[col], values[row, col])
    return reasons


def _image_reasons(column: pa.ChunkedArray, name: str, lo: float, hi: float) -> list[Reason | None]:
    reasons: list[Reason | None] = [None] * len(column)
    present = column.is_valid().to_numpy(zero_copy_only=False)
    for row in np.nonzero(~present)[0]:
        reasons[row] = ("missing value", f"missing image in column '{name}'")
    filled = pc.fill_null(column, pa.scalar([0.0] * column.type.list_size, column.type))
    flat = pc.list_flatten(filled).to_numpy(zero_copy_only=False)
    pixels = flat.astype(np.float64).reshape(len(column), column.type.list_size)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(pixels) | (pixels < lo) | (pixels > hi)
    for row in np.nonzero(bad.any(axis=1))[0]:
        if reasons[row] is None:
            pixel = int(np.argmax(bad[row]))
            value = pixels[row, pixel]
            kind = "out of range" if np.isfinite(value) else "missing value"
            reasons[row] = (
                kind,
                f"pixel {pixel} of '{name}' is {value:g}; expected a number in [{lo:g}, {hi:g}]",
            )
    return reasons


def clean(table: pa.Table, schema: dict[str, Any], max_quarantined: float) -> Cleaned:
    """Split ingested rows into kept and quarantined.

    Reasons, first that applies: duplicate key, missing label, missing/NaN/infinite feature,
    feature outside ``schema['range']``. Raises CleanError when the share of quarantined rows
    exceeds ``max_quarantined``, naming the first bad row.
    """
    lo, hi = (float(v) for v in schema["range"])
    label = schema["label"]
    if schema.get("image"):
        reasons = _image_reasons(table.column(schema["image"]["column"]), schema["image"]["column"], lo, hi)
    else:
        names = list(schema["features"])
        values = (
            np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names])
            if table.num_rows
            else np.empty((0, len(names)))
        )
        reasons = _feature_reasons(values, names, lo, hi)
    label_missing = table.column(label).is_null().to_numpy(zero_copy_only=False)
    seen: set[str] = set()
    for row, key in enumerate(table.column("key").to_pylist()):
        if key in seen:
            reasons[row] = ("duplicate key", f"duplicate key '{key}'")
        elif label_missing[row]:
            reasons[row] = ("missing label", f"missing label in column '{label}'")
        seen.add(key)

    bad = np.array([r is not None for r in reasons], dtype=bool)
    kept = table.filter(pa.array(~bad))
    quarantined = table.filter(pa.array(bad)).append_column(
        "reason", pa.array([r[1] for r in reasons if r is not None], pa.string())
    )
    by_reason: dict[str, int] = {}
    for kind, _ in filter(None, reasons):
        by_reason[kind] = by_reason.get(kind, 0) + 1
    report = {
        "rows_in": table.num_rows,
        "rows_kept": kept.num_rows,
        "rows_quarantined": quarantined.num_rows,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
    }
    if table.num_rows == 0:
        raise CleanError("clean: no rows were ingested; expected at least one")
    share = quarantined.num_rows / table.num_rows
    if share > max_quarantined:
        first = quarantined.slice(0, 1).to_pylist()[0]
        raise CleanError(
            f"clean: {quarantined.num_rows} of {table.num_rows} rows ({share:.1%}) are bad, more than "
            f"max_quarantined {max_quarantined:.1%}; first: row '{first['key']}': {first['reason']}"
        )
    return Cleaned(kept, quarantined, report)
