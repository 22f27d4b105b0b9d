"""clean: parse text columns, validate rows against the schema; bad rows go to quarantine.

No row disappears: rows in = rows kept + rows quarantined, and the report says so. A row's
reason is the first that applies, in this order: unreadable line, repeated header line,
duplicate key, duplicate row (with ``dedupe``), a value that does not parse, missing label, a
label not in ``schema.classes``, missing/NaN/infinite value, value out of range, a rare class
(a text label in fewer than ``min_class_rows`` rows in all). Duplicates across partitions are
``steps.dedupe``'s to find; the report adds up in ``steps.tally``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import arrow
from steps.dedupe import Marks, duplicates, marks
from steps.errors import BadInput, CleanError
from steps.schema import MISSING, PARSERS, NotANumber, decimal_for, problem_kind, read_column
from steps.tally import Tally

# A reason is (kind, sentence): the kind is counted in the report, the sentence is stored.
Reason = tuple[str, str]


@dataclass(frozen=True)
class Cleaned:
    kept: pa.Table
    quarantined: pa.Table  # the ingested columns plus 'reason'
    report: dict[str, Any]


def parse_column(
    values: list[str | None], name: str, kind: str, decimal: str | None = None, default: str | None = "."
) -> tuple[pa.Array, list[Reason | None]]:
    """Parse one text column: the typed column (null where missing or bad) and a reason per bad
    cell. Numbers are read with ``decimal`` as decimal mark ('.' or ','), else the one the
    column's cells show, else ``default`` (the file's); None: undecided, and a cell that the two
    marks read as different numbers is an 'ambiguous number'."""
    if kind not in PARSERS:
        raise BadInput(f"clean: schema.parse.{name} is {kind!r}; expected one of {', '.join(PARSERS)}")
    parse, expected, arrow_type = PARSERS[kind]
    if arrow_type != pa.float64():  # a category: each distinct cell once
        cells: dict[str | None, tuple[Any, Reason | None]] = {}
        for text in values:
            if text not in cells:
                cells[text] = _parse_cell(text, name, parse, expected, decimal)
        return arrow.array([cells[text][0] for text in values], arrow_type), [cells[text][1] for text in values]
    # Numbers: the plain ones column-wise (steps.schema.read_column), the others one by one,
    # each distinct cell once (a column of money has few cells left, but 'n/a' may be many).
    decimal, numbers, read = read_column(arrow.array(values, pa.string()), kind, decimal, default)
    reasons: list[Reason | None] = [None] * len(values)
    left: dict[str | None, tuple[Any, Reason | None]] = {}
    for row in np.flatnonzero(~read).tolist():
        text = values[row]
        if text not in left:
            left[text] = _parse_cell(text, name, parse, expected, decimal)
        value, reasons[row] = left[text]
        if value is not None:
            numbers[row], read[row] = value, True
    numbers[~read] = 0.0  # a null's slot, as pa.array leaves it
    return arrow.numbers(numbers, valid=read), reasons


def _parse_cell(
    text: str | None, name: str, parse: Callable[[str, str | None], Any], expected: str, decimal: str | None
) -> tuple[Any, Reason | None]:
    """One cell of a column as ``parse`` reads it under ``decimal``: (its value, None), or
    (None, why it has none)."""
    stripped = None if text is None else text.strip()
    if stripped is None or stripped.lower() in MISSING:
        return None, ("missing value", f"missing value in column '{name}'")
    try:
        return parse(stripped, decimal), None
    except NotANumber as err:
        kind_ = "ambiguous number" if err.ambiguous else "unparsable value"
        why = str(err) if err.ambiguous or "decimal mark" in str(err) else f"expected {expected}"
        return None, (kind_, f"column '{name}' has {text!r}{',' if err.ambiguous else ';'} {why}")
    except ValueError:
        return None, ("unparsable value", f"column '{name}' has {text!r}; expected {expected}")


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
    present = arrow.to_numpy(column.is_valid())
    for row in np.nonzero(~present)[0]:
        reasons[row] = ("missing value", f"missing image in column '{name}'")
    filled = pc.fill_null(column, _no_pixels(column.type)) if column.null_count else column
    pixels = arrow.to_numpy(pc.list_flatten(filled)).reshape(len(column), column.type.list_size)
    # The bounds in the pixels' own type when that is exact (no float64 copy of every pixel).
    lo_, hi_ = (pixels.dtype.type(v) if pixels.dtype.type(v) == v else np.float64(v) for v in (lo, hi))
    if pixels.size and pixels.min() >= lo_ and pixels.max() <= hi_:  # a NaN fails this too (min/max give NaN)
        return reasons  # every pixel fine: two fast passes, not three masks of every pixel
    with np.errstate(invalid="ignore"):  # NaN fails both comparisons
        bad = ~((pixels >= lo_) & (pixels <= hi_))
    for row in np.nonzero(bad.any(axis=1))[0]:
        if reasons[row] is None:
            pixel = int(np.argmax(bad[row]))
            value = pixels[row, pixel]
            kind = "out of range" if np.isfinite(value) else "missing value"
            reasons[row] = (kind, f"pixel {pixel} of '{name}' is {value:g}; expected a number in [{lo:g}, {hi:g}]")
    return reasons


def _no_pixels(image: pa.DataType) -> pa.Scalar:
    """An image of zeros, in place of a missing one."""
    zeros = arrow.numbers(np.zeros(image.list_size, image.value_type.to_pandas_dtype()))
    return pa.FixedSizeListArray.from_arrays(zeros, type=image)[0]


def _row_values(table: pa.Table, columns: list[str], schema: dict[str, Any]) -> Iterator[tuple]:
    """Per row, what makes two rows the same: the label and feature values; for an image the
    label and a digest of its pixels (a tuple of 784 floats per row would not fit in memory)."""
    if not schema.get("image"):
        return zip(*(table.column(c).to_pylist() for c in columns), strict=True)
    image = table.column(schema["image"]["column"])
    filled = pc.fill_null(image, _no_pixels(image.type))
    pixels = arrow.to_numpy(pc.list_flatten(filled)).reshape(len(image), image.type.list_size)
    missing = arrow.to_numpy(image.is_null())
    digests = (None if gone else hashlib.blake2b(row.tobytes(), digest_size=16).digest()
               for row, gone in zip(pixels, missing, strict=True))  # fmt: skip
    return zip(*(table.column(c).to_pylist() for c in columns), digests, strict=True)


def _row_digest(values: tuple) -> bytes | None:
    """16 bytes that two rows share exactly when their values are equal; None for a row with a
    NaN, which equals nothing (as in Python), so it can repeat no row."""
    if any(isinstance(v, float) and v != v for v in values):
        return None
    same = tuple(v + 0.0 if isinstance(v, float) else v for v in values)  # -0.0 == 0.0
    return hashlib.blake2b(repr(same).encode(), digest_size=16).digest()


def _unknown_classes(labels: pa.ChunkedArray, classes: list) -> list[Reason | None]:
    """'unknown class' for each row whose label is not one of ``classes`` (schema.classes): a new
    or cut label never reaches training silently. Labels compare as text ('1' is 1)."""
    allowed = {str(c) for c in classes}
    texts = pc.cast(labels, pa.string()).to_pylist()
    listed = ", ".join(map(str, classes))
    why = "is not one of schema.classes"
    return [None if t is None or t in allowed else ("unknown class", f"label '{t}' {why} ({listed})") for t in texts]


def learned_label(parsed: pa.Table, schema: dict[str, Any]) -> str | None:
    """The label whose classes clean.min_class_rows counts: a text label, when schema.classes
    does not list the classes (numbers may be values to fit, not classes; list them to check)."""
    label = schema["label"]
    if label is None or schema.get("classes") is not None or not pa.types.is_string(parsed.schema.field(label).type):
        return None
    return label


def rare_classes(counts: dict[Any, int], min_rows: int) -> dict[Any, int]:
    """The classes (label: rows) seen in fewer than ``min_rows`` rows in all (clean.min_class_rows):
    too few to learn, and more likely a cut or mistyped label than a class."""
    return {label: n for label, n in sorted(counts.items(), key=lambda kv: str(kv[0])) if n < min_rows}


def class_counts(checked: Checked, label: str | None) -> dict[Any, int]:
    """Rows per label among a partition's rows that no check refused (duplicates aside)."""
    if label is None:
        return {}
    ok = pc.and_(checked.checks.column("before_kind").is_null(), checked.checks.column("after_kind").is_null())
    counts = pc.value_counts(checked.parsed.column(label).filter(ok)).to_pylist()
    return {c["values"]: c["counts"] for c in counts if c["values"] is not None}


def rare_rows(checked: Checked, label: str | None, rare: dict[Any, int], min_rows: int) -> tuple[np.ndarray, list[str]]:
    """(a mask of the rows whose label is a rare class, their reasons in order): what
    ``settle`` quarantines as 'rare class' where no earlier reason applies."""
    n = checked.parsed.num_rows
    if not rare or label is None:
        return np.zeros(n, bool), []
    labels = checked.parsed.column(label)
    mask = arrow.to_numpy(pc.fill_null(pc.is_in(labels, arrow.array(list(rare), labels.type)),
                                       arrow.scalar(False, pa.bool_())))  # fmt: skip
    texts = [f"label '{v}' has {rare[v]} row(s) in all, fewer than clean.min_class_rows {min_rows}; "
             "list the labels in schema.classes to keep a class this small"
             for v in labels.filter(arrow.numbers(mask)).to_pylist()]  # fmt: skip
    return mask, texts


def _first(*lists: list[Reason | None]) -> list[Reason | None]:
    """Per row, the first reason of the lists given in order of precedence. Bad rows are few:
    only the rows with a reason are visited in Python (itertools.compress finds them in C)."""
    out = list(lists[0])
    for other in lists[1:]:
        for row in itertools.compress(range(len(other)), other):  # a reason is a tuple: truthy
            if out[row] is None:
                out[row] = other[row]
    return out


def _rows_where(mask: np.ndarray, reason: Reason) -> list[Reason | None]:
    """``reason`` for the rows of ``mask``, None for the others."""
    out: list[Reason | None] = [None] * len(mask)
    for row in np.nonzero(mask)[0]:
        out[row] = reason
    return out


DIGEST = pa.binary(16)
# What `check` finds in each row of a partition; the reasons split where duplicates (found
# across partitions) take precedence.
CHECKS = pa.schema([
    ("before_kind", pa.string()), ("before", pa.string()),  # unreadable line, repeated header
    ("after_kind", pa.string()), ("after", pa.string()),  # unparsable value, missing label or value, range
    ("key_digest", DIGEST), ("row_digest", DIGEST),  # row digest null: the row can repeat no other
])  # fmt: skip


@dataclass(frozen=True)
class Checked:
    """One partition checked on its own: all that clean decides without the other partitions,
    so it can be computed once per partition and reused (flows/storage/datums.py)."""

    parsed: pa.Table  # every row, typed; a cell that did not parse is null
    checks: pa.Table  # CHECKS, one row per row


def check(table: pa.Table, schema: dict[str, Any], row_digests: bool = True) -> Checked:
    """Parse and check the rows of one ingested partition; duplicates are left to `duplicates`.
    Without ``row_digests`` (scoring: a repeated row is scored like any other) every row digest
    is null, so no row repeats another; a key column of the schema is still checked (a null key
    digest repeats nothing)."""
    n = table.num_rows
    label = schema["label"]
    columns = [c for c in [label, *(schema.get("features") or [])] if c is not None]  # label None: to score
    none: list[Reason | None] = [None] * n

    has_problem = "problem" in table.column_names
    problems = none
    if has_problem and table.column("problem").null_count < n:
        problems = [(problem_kind(p), p) if p else None for p in table.column("problem").to_pylist()]
    text = [c for c in columns if pa.types.is_string(table.schema.field(c).type)]
    # A line whose every text column holds its own name: the header again, in the middle.
    header = np.ones(n, bool) if text else np.zeros(n, bool)
    for c in text:
        same = pc.equal(table.column(c), arrow.text(c))
        header &= arrow.to_numpy(pc.fill_null(same, arrow.scalar(False, pa.bool_())))
    headers = _rows_where(header, ("repeated header line", "repeated header line"))
    key_digest = pa.nulls(n, DIGEST)
    if row_digests or schema.get("key"):  # a generated key ('<partition>:<n>') repeats no other in a partition
        keys = table.column("key").to_pylist()
        key_digest = arrow.array([hashlib.blake2b(k.encode(), digest_size=16).digest() for k in keys], DIGEST)
    row_digest = pa.nulls(n, DIGEST)
    if row_digests:
        rows = zip(problems, _row_values(table, columns, schema), strict=True)
        row_digest = arrow.array([None if problem else _row_digest(values) for problem, values in rows], DIGEST)

    # Number columns that neither params nor their own cells decide take the file's decimal mark,
    # which ingest notes when it is not '.' ('?': undecided, steps.read.numbers.DECIMAL_KEY).
    noted = (table.schema.metadata or {}).get(b"cairn.decimal", b".").decode()
    default = None if noted == "?" else noted
    parsed = table.replace_schema_metadata(None) if table.schema.metadata else table
    parse_reasons = list(none)
    for col, kind in (schema.get("parse") or {}).items():
        values = table.column(col).to_pylist()
        typed, reasons = parse_column(values, col, kind, decimal_for(schema, col), default)
        parse_reasons = _first(parse_reasons, reasons)
        parsed = parsed.set_column(parsed.schema.get_field_index(col), col, typed)
    parsed = parsed.drop_columns(["problem"]) if has_problem else parsed

    label_missing = arrow.to_numpy(parsed.column(label).is_null()) if label else np.zeros(n, bool)
    label_reasons = _rows_where(label_missing, ("missing label", f"missing label in column '{label}'"))
    if label and schema.get("classes") is not None:
        label_reasons = _first(label_reasons, _unknown_classes(parsed.column(label), schema["classes"]))
    if schema.get("image"):
        lo, hi = (float(v) for v in schema["range"])
        value_reasons = _image_reasons(parsed.column(schema["image"]["column"]), schema["image"]["column"], lo, hi)
    else:
        numeric = [c for c in schema["features"] if pa.types.is_floating(parsed.schema.field(c).type)]
        values = np.column_stack(
            [arrow.to_numpy(parsed.column(c)).astype(np.float64) for c in numeric]
        ) if numeric else np.empty((n, 0))  # fmt: skip
        value_reasons = _numeric_reasons(values, numeric, _ranges(schema, numeric))
        categories = [c for c in schema["features"] if c not in numeric]
        for c in categories:
            missing = arrow.to_numpy(parsed.column(c).is_null())
            value_reasons = _first(
                value_reasons, _rows_where(missing, ("missing value", f"missing value in column '{c}'"))
            )

    before = _first(problems, headers)
    after = _first(parse_reasons, label_reasons, value_reasons)
    checks = pa.table(
        [
            arrow.array([r and r[0] for r in before], pa.string()),
            arrow.array([r and r[1] for r in before], pa.string()),
            arrow.array([r and r[0] for r in after], pa.string()),
            arrow.array([r and r[1] for r in after], pa.string()),
            key_digest,
            row_digest,
        ],
        schema=CHECKS,
    )
    return Checked(parsed, checks)


def settle(
    ingested: Callable[[], pa.Table], checked: Checked, marks: Marks, rare: tuple[np.ndarray, list[str]] | None = None
) -> tuple[pa.Table, pa.Table | None, dict[str, int]]:
    """The kept rows (typed), the quarantined rows (as ``ingested()`` has them, plus 'reason'; None
    when there are none) and the count per reason kind, of one partition under its ``marks`` and
    its ``rare`` class rows (``rare_rows``), the last reason that applies."""
    n = checked.parsed.num_rows
    keys = checked.parsed.column("key")
    key_repeated, row_repeated = arrow.numbers(marks.key), arrow.numbers(marks.row)
    no_text = arrow.text(None)
    row_text = pc.replace_with_mask(pa.nulls(n, pa.string()), row_repeated, arrow.array(marks.row_text, pa.string()))
    rare_mask, rare_texts = rare if rare is not None else (np.zeros(n, bool), [])
    is_rare = arrow.numbers(rare_mask)
    rare_text = pc.replace_with_mask(pa.nulls(n, pa.string()), is_rare, arrow.array(rare_texts, pa.string()))
    checks = checked.checks
    kind = pc.coalesce(
        checks.column("before_kind"),
        pc.if_else(key_repeated, arrow.text("duplicate key"), no_text),
        pc.if_else(row_repeated, arrow.text("duplicate row"), no_text),
        checks.column("after_kind"),
        pc.if_else(is_rare, arrow.text("rare class"), no_text),
    )
    quoted = (arrow.text("duplicate key '"), keys, arrow.text("'"), arrow.text(""))  # "" joins them
    duplicate_key = pc.binary_join_element_wise(*quoted)
    text = pc.coalesce(
        checks.column("before"),
        pc.if_else(key_repeated, duplicate_key, no_text),
        row_text,
        checks.column("after"),
        rare_text,
    )
    bad = kind.is_valid()
    counts = {c["values"]: c["counts"] for c in pc.value_counts(kind.filter(bad)).to_pylist()}
    if not counts:  # nothing to quarantine: no copy of the rows, and the ingested ones need not be read
        return checked.parsed, None, counts
    kept = checked.parsed.filter(pc.invert(bad))
    quarantined = ingested().filter(bad).append_column("reason", text.filter(bad))
    return kept, quarantined, counts


def quarantine_schema(ingested: pa.Schema) -> pa.Schema:
    """The columns of quarantine.parquet: the ingested ones and the reason."""
    return ingested.append(pa.field("reason", pa.string()))


def clean(table: pa.Table, schema: dict[str, Any], params: dict[str, Any], row_digests: bool = True) -> Cleaned:
    """Split ingested rows into kept (parsed, typed) and quarantined (as ingested, plus 'reason').

    ``params``: ``max_quarantined`` (share of rows; ``check_share`` says whether it is exceeded),
    ``min_class_rows`` (``rare_classes``) and ``dedupe`` (quarantine rows whose values repeat an
    earlier row's; without it they are kept and counted; without ``row_digests`` they are not
    even looked for). One table at once;
    the clean stage does the same partition by partition.
    """
    if table.num_rows == 0:
        raise CleanError("clean: no rows were ingested; expected at least one")
    checked = check(table, schema, row_digests)
    dups = duplicates(lambda column: [checked.checks.column(column)])
    dedupe = params["dedupe"]
    rows = marks(dups, 0, table.num_rows, dedupe, {}, lambda: checked.parsed.column("key"))
    rare = rare_classes(class_counts(checked, learned_label(checked.parsed, schema)), params["min_class_rows"])
    rare_marks = rare_rows(checked, schema["label"], rare, params["min_class_rows"])
    kept, quarantined, counts = settle(lambda: table, checked, rows, rare_marks)
    if quarantined is None:
        quarantined = pa.Table.from_batches([], quarantine_schema(table.schema))
    tally = Tally(dedupe, dups.repeats, rare)
    tally.add(kept.num_rows, counts)
    return Cleaned(kept, quarantined, tally.report())


def check_share(report: dict[str, Any], first: dict | None, params: dict[str, Any], where: str) -> None:
    """CleanError when more rows are bad than ``max_quarantined`` allows (``report`` of clean),
    naming the ``first`` quarantined row and ``where`` the quarantine (written anyway) lists them all."""
    n, bad = report["rows_in"], report["rows_quarantined"]
    if bad / n > params["max_quarantined"]:
        raise CleanError(
            f"clean: {bad} of {n} rows ({bad / n:.1%}) are bad, more than "
            f"max_quarantined {params['max_quarantined']:.1%}; first: row '{first['key']}': {first['reason']}; "
            f"all of them, with reasons, in {where}"
        )
