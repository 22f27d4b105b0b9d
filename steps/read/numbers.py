"""The numeric feature columns of a delimited text file, from text to float64: one reading of
a number (steps.schema.read_number) under each column's decimal mark, so that a cell the check
accepts is one the conversion takes.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from steps import arrow
from steps.schema import NotANumber, decimal_for, file_decimal, marks_in, read_number

BLANK = ["", "NaN", "nan", "NA", "null"]


NUMBER_KINDS = ("number", "percent", "money")
DECIMAL_KEY = "cairn.decimal"  # schema metadata of an ingested table: the file's decimal mark, when not '.'


def decimal_marks(
    columns: dict[str, pa.ChunkedArray], numeric: list[str], schema: dict[str, Any], delimiter: str
) -> tuple[dict[str, str | None], str | None]:
    """The decimal mark of each numeric feature column (None: undecided, each cell read on its
    own), and the file's (steps.schema.file_decimal): schema.decimal, else what the column's
    cells show, else what the file's other number columns show, else the delimiter's default."""
    kinds = dict.fromkeys(numeric, "number")
    kinds |= {c: k for c, k in (schema.get("parse") or {}).items() if k in NUMBER_KINDS and c in columns}
    kinds = {c: k for c, k in kinds.items() if decimal_for(schema, c) is None}
    commas = any(pc.any(pc.match_substring(columns[c], ",")).as_py() for c in kinds)
    if delimiter == "," and not commas:  # no cell shows a decimal comma: '.' (a plain substring search, no regex)
        return {c: decimal_for(schema, c) or "." for c in numeric}, "."
    shown = {c: marks_in(columns[c].combine_chunks(), k) for c, k in kinds.items()}
    default = file_decimal(set().union(*shown.values()), delimiter)
    out = {}
    for col in numeric:
        marks = shown.get(col, set())
        out[col] = decimal_for(schema, col) or (next(iter(marks)) if len(marks) == 1 else None if marks else default)
    return out, default


def to_numbers(column: pa.Array, decimal: str | None) -> tuple[pa.Array, dict[int, tuple[str, str | None]]]:
    """A numeric feature column of text as float64 (blank cells, and cells that are not numbers,
    null), and {row: (cell, why)} for the cells that are not numbers: ``why`` finishes a sentence
    "column 'c' has '1_000' on line 5" ('; expected ...' or ', which is ...'), or is None for a
    cell that is text, not a number at all. ``decimal``: the column's decimal mark (`decimals`;
    None: undecided, so a cell such as '1.000' is ambiguous). One reading: what float() takes and
    Arrow's cast does not ('1_000', non-ASCII digits) is no number here."""
    if decimal == ".":
        try:  # the usual column: plain numbers, its blank cells null already (the CSV reader's nulls)
            return pc.cast(column, pa.float64()), {}
        except pa.ArrowInvalid:
            pass
    cells = pc.utf8_trim_whitespace(column)
    cells = pc.if_else(pc.is_in(cells, arrow.array(BLANK, pa.string())), arrow.text(None), cells)
    if decimal == ".":
        try:  # plain ASCII numbers with a '.', and inf/nan: all a cast reads; anything else fails it
            return pc.cast(cells, pa.float64()), {}
        except pa.ArrowInvalid:
            pass
    texts = cells.to_pylist()
    values: list[float | None] = []
    bad: dict[int, tuple[str, str | None]] = {}
    for row, text in enumerate(texts):
        value = None
        if text is not None:
            try:
                value = read_number(text, decimal)
            except NotANumber as err:
                numeric = err.ambiguous or "decimal mark" in str(err) or _python_number(text)
                bad[row] = (column[row].as_py(), (", " if err.ambiguous else "; ") + str(err) if numeric else None)
        values.append(value)
    return arrow.array(values, pa.float64()), bad


def _python_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
