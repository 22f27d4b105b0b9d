"""clean: parse text columns, validate rows against the schema; bad rows go to quarantine.

No row disappears: rows in = rows kept + rows quarantined, and the report says so. A row's
reason is the first that applies, in this order: unreadable line, repeated header line,
duplicate key, duplicate row (with ``dedupe``), a value that does not parse, missing label,
missing/NaN/infinite value, value out of range.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import StepError

# A reason is (kind, sentence): the kind is counted in the report, the sentence is stored.
Reason = tuple[str, str]
MISSING = {"", "n/a", "na", "nan", "null", "none", "-", "?"}


class CleanError(StepError):
    """Data too broken to clean: more bad rows than params allow."""


@dataclass(frozen=True)
class Cleaned:
    kept: pa.Table
    quarantined: pa.Table  # the ingested columns plus 'reason'
    report: dict[str, Any]


def _number(text: str) -> float:
    return float(text)


def _percent(text: str) -> float:
    return float(text.removesuffix("%").strip())


MONEY = re.compile(r"-?\$?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d+)?")  # '$12,000.00', '12000', not '12.000,00'


def _money(text: str) -> float:
    if not MONEY.fullmatch(text):
        raise ValueError(text)
    return float(text.replace("$", "").replace(",", "").replace(" ", ""))


def _range_mid(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", text)
    if match is None:
        return float(text)  # a single number is a range of one
    lo, hi = float(match[1]), float(match[2])
    if lo > hi:
        raise ValueError(text)
    return (lo + hi) / 2


def _category(text: str) -> str:
    return re.sub(r"[\s_]+", "_", text.strip().lower())


# kind -> (parse one stripped, non-missing cell, what a good value looks like, Arrow type)
PARSERS: dict[str, tuple[Callable[[str], Any], str, pa.DataType]] = {
    "number": (_number, "a number like '42.5'", pa.float64()),
    "percent": (_percent, "a percentage like '12.5%'", pa.float64()),
    "money": (_money, "an amount like '$12,000.00'", pa.float64()),
    "range_mid": (_range_mid, "a range like '675-679'", pa.float64()),
    "category": (_category, "a category name", pa.string()),
}


def parse_column(values: list[str | None], name: str, kind: str) -> tuple[pa.Array, list[Reason | None]]:
    """Parse one text column: the typed column (null where missing or bad) and a reason per bad cell."""
    if kind not in PARSERS:
        raise StepError(f"clean: schema.parse.{name} is {kind!r}; expected one of {', '.join(PARSERS)}")
    parse, expected, arrow_type = PARSERS[kind]
    out: list[Any] = []
    reasons: list[Reason | None] = []
    for text in values:
        stripped = None if text is None else text.strip()
        if stripped is None or stripped.lower() in MISSING:
            out.append(None)
            reasons.append(("missing value", f"missing value in column '{name}'"))
            continue
        try:
            out.append(parse(stripped))
            reasons.append(None)
        except ValueError:
            out.append(None)
            reasons.append(("unparsable value", f"column '{name}' has {text!r}; expected {expected}"))
    return pa.array(out, arrow_type), reasons


def _ranges(schema: dict[str, Any], numeric: list[str]) -> dict[str, tuple[float, float]]:
    spec = schema.get("range")
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {c: (float(lo), float(hi)) for c, (lo, hi) in spec.items()}
    lo, hi = (float(v) for v in spec)
    return dict.fromkeys(numeric, (lo, hi))


def _numeric_reasons(values: np.ndarray, names: list[str], ranges: dict) -> list[Reason | None]:
    """The first problem of each row of a (rows, features) float array, or None."""
    reasons: list[Reason | None] = [None] * len(values)
    lo = np.array([ranges.get(n, (-np.inf, np.inf))[0] for n in names])
    hi = np.array([ranges.get(n, (-np.inf, np.inf))[1] for n in names])
    checks = (
        (np.isnan(values), lambda c, v: ("missing value", f"missing or NaN value in column '{c}'")),
        (np.isinf(values), lambda c, v: ("infinite value", f"infinite value in column '{c}'")),
        (
            (values < lo) | (values > hi),
            lambda c, v: ("out of range", f"value {v:g} in column '{c}' outside [{ranges[c][0]:g}, {ranges[c][1]:g}]"),
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
            reasons[row] = (kind, f"pixel {pixel} of '{name}' is {value:g}; expected a number in [{lo:g}, {hi:g}]")
    return reasons


def _row_values(table: pa.Table, columns: list[str], schema: dict[str, Any]) -> Iterator[tuple]:
    """Per row, what makes two rows the same: the label and feature values; for an image the
    label and a digest of its pixels (a tuple of 784 floats per row would not fit in memory)."""
    if not schema.get("image"):
        return zip(*(table.column(c).to_pylist() for c in columns), strict=True)
    image = table.column(schema["image"]["column"])
    filled = pc.fill_null(image, pa.scalar([0.0] * image.type.list_size, image.type))
    pixels = pc.list_flatten(filled).to_numpy(zero_copy_only=False).reshape(len(image), image.type.list_size)
    missing = image.is_null().to_numpy(zero_copy_only=False)
    digests = (None if gone else hashlib.blake2b(row.tobytes(), digest_size=16).digest()
               for row, gone in zip(pixels, missing, strict=True))  # fmt: skip
    return zip(*(table.column(c).to_pylist() for c in columns), digests, strict=True)


def _first(*lists: list[Reason | None]) -> list[Reason | None]:
    """Per row, the first reason of the lists given in order of precedence."""
    return [next((r for r in row if r is not None), None) for row in zip(*lists, strict=True)]


def clean(table: pa.Table, schema: dict[str, Any], params: dict[str, Any]) -> Cleaned:
    """Split ingested rows into kept (parsed, typed) and quarantined (as ingested, plus 'reason').

    ``params``: ``max_quarantined`` (share of rows; ``check_share`` says whether it is exceeded)
    and ``dedupe`` (quarantine rows whose values repeat an earlier row's; without it they are
    kept and counted).
    """
    n = table.num_rows
    if n == 0:
        raise CleanError("clean: no rows were ingested; expected at least one")
    label = schema["label"]
    columns = [c for c in [label, *(schema.get("features") or [])] if c is not None]  # label None: to score
    none: list[Reason | None] = [None] * n

    has_problem = "problem" in table.column_names
    problem_texts = table.column("problem").to_pylist() if has_problem else none
    problems = [("unreadable line", p) if p else None for p in problem_texts]
    text = {c: table.column(c).to_pylist() for c in columns if pa.types.is_string(table.schema.field(c).type)}
    headers = [("repeated header line", "repeated header line") if text and all(text[c][i] == c for c in text)
               else None for i in range(n)]  # fmt: skip

    seen_keys: set[str] = set()
    duplicates = list(none)
    first_of: dict[tuple, str] = {}
    repeats = 0
    rows = _row_values(table, columns, schema)
    for i, key in enumerate(table.column("key").to_pylist()):
        if key in seen_keys:
            duplicates[i] = ("duplicate key", f"duplicate key '{key}'")
        seen_keys.add(key)
        values = next(rows)
        if problems[i] is None and duplicates[i] is None:
            if values in first_of:
                repeats += 1
                if params.get("dedupe"):
                    duplicates[i] = ("duplicate row", f"duplicate of row '{first_of[values]}'")
            else:
                first_of[values] = key

    parsed = table
    parse_reasons = list(none)
    for col, kind in (schema.get("parse") or {}).items():
        typed, reasons = parse_column(table.column(col).to_pylist(), col, kind)
        parse_reasons = _first(parse_reasons, reasons)
        parsed = parsed.set_column(parsed.schema.get_field_index(col), col, typed)
    parsed = parsed.drop_columns(["problem"]) if has_problem else parsed

    label_missing = parsed.column(label).is_null().to_numpy(zero_copy_only=False) if label else np.zeros(n, bool)
    label_reasons = [("missing label", f"missing label in column '{label}'") if m else None for m in label_missing]
    if schema.get("image"):
        lo, hi = (float(v) for v in schema["range"])
        value_reasons = _image_reasons(parsed.column(schema["image"]["column"]), schema["image"]["column"], lo, hi)
    else:
        numeric = [c for c in schema["features"] if pa.types.is_floating(parsed.schema.field(c).type)]
        values = np.column_stack(
            [parsed.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in numeric]
        ) if numeric else np.empty((n, 0))  # fmt: skip
        value_reasons = _numeric_reasons(values, numeric, _ranges(schema, numeric))
        categories = [c for c in schema["features"] if c not in numeric]
        for c in categories:
            missing = parsed.column(c).is_null().to_numpy(zero_copy_only=False)
            value_reasons = _first(value_reasons, [("missing value", f"missing value in column '{c}'") if m else None
                                                   for m in missing])  # fmt: skip

    reasons = _first(problems, headers, duplicates, parse_reasons, label_reasons, value_reasons)
    bad = np.array([r is not None for r in reasons], dtype=bool)
    kept = parsed.filter(pa.array(~bad))
    quarantined = table.filter(pa.array(bad)).append_column(
        "reason", pa.array([r[1] for r in reasons if r is not None], pa.string())
    )
    by_reason: dict[str, int] = {}
    for kind, _ in filter(None, reasons):
        by_reason[kind] = by_reason.get(kind, 0) + 1
    report = {
        "rows_in": n,
        "rows_kept": kept.num_rows,
        "rows_quarantined": quarantined.num_rows,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
    }
    if not params.get("dedupe"):
        report["duplicate_rows_kept"] = repeats  # clean.dedupe: true quarantines them
    return Cleaned(kept, quarantined, report)


def check_share(cleaned: Cleaned, params: dict[str, Any], where: str) -> None:
    """CleanError when more rows are bad than ``max_quarantined`` allows, naming the first bad row
    and ``where`` the quarantine (written anyway) lists them all."""
    n, bad = cleaned.report["rows_in"], cleaned.report["rows_quarantined"]
    if bad / n > params["max_quarantined"]:
        first = cleaned.quarantined.slice(0, 1).to_pylist()[0]
        raise CleanError(
            f"clean: {bad} of {n} rows ({bad / n:.1%}) are bad, more than "
            f"max_quarantined {params['max_quarantined']:.1%}; first: row '{first['key']}': {first['reason']}; "
            f"all of them, with reasons, in {where}"
        )
