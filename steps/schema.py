"""The rules a workload's schema (params.yaml ``schema``) names, shared by ingest, clean and the
models: how a text cell of each ``parse`` kind becomes a value, what counts as missing, and which
columns are features when ``features`` is null. Its own module so that a model depends on these
rules, not on the readers and checks around them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import arrow
from steps.errors import BadInput

MISSING = {"", "n/a", "na", "nan", "null", "none", "-", "?"}


# Numbers as exports write them. A cell is read under a convention: the decimal mark '.' (with ','
# grouping thousands) or ',' (with '.' grouping thousands), set per workload or per column by
# ``schema.decimal``, or else found from the column's cells: a cell that only one convention
# reads ('17,77', '1,234.5', '0.125') decides it. A cell that both read as different numbers
# ('1.000', '1,500') with nothing to decide between them is ambiguous: quarantined, not guessed.
# Digits are ASCII and there are no '_' separators: what Python's float() takes and Arrow's cast
# rejects is not a number here either, so the check and the conversion agree.
DECIMALS = (".", ",")
_EXPONENT = r"(?:[eE][+-]?[0-9]+)?"


def _grammar(decimal: str) -> re.Pattern:
    mark, group = re.escape(decimal), re.escape("," if decimal == "." else ".")
    whole = rf"(?:[1-9][0-9]{{0,2}}(?:{group}[0-9]{{3}})+|[0-9]+)"
    return re.compile(rf"[+-]?(?:{whole}(?:{mark}[0-9]*)?|{mark}[0-9]+){_EXPONENT}")


GRAMMARS = {d: _grammar(d) for d in DECIMALS}
SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
AMBIGUOUS = "set schema.decimal in params.yaml"  # how every ambiguous cell's reason ends


class NotANumber(ValueError):
    """A cell that is not a number under the convention; ``ambiguous``: one that two conventions
    read as two different numbers. ``str()`` says why, to finish 'column 'c' has '1.000'...'."""

    def __init__(self, why: str, ambiguous: bool = False) -> None:
        super().__init__(why)
        self.ambiguous = ambiguous


def _under(text: str, decimal: str) -> float:
    group = "," if decimal == "." else "."
    return float(text.replace(group, "").replace(decimal, "."))


def read_number(text: str, decimal: str | None) -> float:
    """The number ``text`` (stripped, not missing) writes under ``decimal`` ('.', ',', or None:
    undecided, so a cell that both read differently is ambiguous). Raises NotANumber."""
    if SPECIAL.fullmatch(text):
        return float(text)
    readings = {
        d: _under(text, d) for d in (DECIMALS if decimal is None else (decimal,)) if GRAMMARS[d].fullmatch(text)
    }
    values = set(readings.values())
    if len(values) == 1:
        return values.pop()
    if len(values) > 1:
        return_ = " or ".join(f"{v:g} with '{d}' as decimal mark" for d, v in readings.items())
        raise NotANumber(f"which is {return_}; {AMBIGUOUS}", ambiguous=True)
    if decimal is not None and any(GRAMMARS[d].fullmatch(text) for d in DECIMALS):
        raise NotANumber(f"expected a number with '{decimal}' as decimal mark (schema.decimal)")
    raise NotANumber("expected a number like '42.5' (digits 0-9, no '_')")


def decimal_of(cells: list[str], declared: str | None, default: str | None = None) -> str | None:
    """The decimal mark of a column: ``declared``, else the one its cells (stripped, not
    missing) alone can be read with, else ``default`` (the file's: `file_decimal`; None:
    undecided, each cell read on its own)."""
    return declared if declared is not None else _decided(_only_marks(cells), default)


def _only_marks(cells: list[str]) -> set[str]:
    """The decimal marks that some of ``cells`` can only be read with."""
    marks = set()
    for text in cells:
        fits = [d for d in DECIMALS if GRAMMARS[d].fullmatch(text)]
        if len(fits) == 1:
            marks.add(fits[0])
            if len(marks) > 1:
                break
    return marks


def _decided(marks: set[str], default: str | None) -> str | None:
    if len(marks) > 1:
        return None  # both marks in one column: each cell read on its own
    return next(iter(marks), default)


def marks_in(cells: pa.Array, kind: str = "number") -> set[str]:
    """The decimal marks that some cell of a text column (of parse ``kind``) can only be read
    with: {'.'} for '12.5' or '1,234.5', {','} for '17,77' or '25.000,00'. Column operations."""
    bare = pc.utf8_trim_whitespace(cells)
    if kind == "percent":
        bare = pc.utf8_rtrim_whitespace(pc.replace_substring_regex(bare, "%$", ""))
    elif kind == "money":
        bare = pc.replace_substring_regex(bare, r"[\s$€£-]", "")
    fits = {d: pc.match_substring_regex(bare, f"^(?:{GRAMMARS[d].pattern})$") for d in DECIMALS}
    one = {".": pc.and_(fits["."], pc.invert(fits[","])), ",": pc.and_(fits[","], pc.invert(fits["."]))}
    return {d for d, only in one.items() if pc.any(only).as_py()}


def file_decimal(marks: set[str], delimiter: str | None) -> str | None:
    """The decimal mark of a file's columns that their own cells leave undecided: the one the
    file's other columns show (``marks``: every mark some column can only be read with), else
    '.' in a comma-delimited file (whose unquoted cells cannot hold a decimal comma) or a
    Parquet file (``delimiter`` None: its numbers are typed), else None: a cell such as '1.000'
    is ambiguous there."""
    if len(marks) == 1:
        return next(iter(marks))
    return "." if delimiter in (",", None) else None


def problem_kind(problem: str) -> str:
    """The quarantine reason kind of a row that ingest could not read whole: a malformed line, or a
    cell of a numeric column that is not a number ('1_000'), or is an ambiguous one ('1.000')."""
    if problem.startswith("malformed line"):
        return "unreadable line"
    return "ambiguous number" if problem.endswith(AMBIGUOUS) else "unparsable value"


def decimal_for(schema: dict[str, Any], column: str) -> str | None:
    """``schema.decimal`` for ``column``: one mark for every column, or a mapping by column."""
    spec = schema.get("decimal")
    return spec.get(column) if isinstance(spec, dict) else spec


def _number(text: str, decimal: str | None) -> float:
    return read_number(text, decimal)


def _percent(text: str, decimal: str | None) -> float:
    return read_number(text.removesuffix("%").strip(), decimal)


MONEY = re.compile(r"(-?)\s*[$€£]?\s*(-?)([0-9.,]+)\s*[$€£]?")  # '$12,000.00', '-$5', '12.000,00 €'


def _money(text: str, decimal: str | None) -> float:
    match = MONEY.fullmatch(text)
    if match is None or (match[1] and match[2]):
        raise NotANumber("expected an amount like '$12,000.00'")
    return read_number(match[1] + match[2] + match[3], decimal)


def bare(kind: str, text: str) -> str:
    """The number a cell of parse ``kind`` holds, to decide its column's decimal mark with."""
    if kind == "percent":
        return text.removesuffix("%").strip()
    if kind == "money" and (match := MONEY.fullmatch(text)):
        return match[3]
    return text


def _range_mid(text: str, decimal: str | None = None) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*-\s*([0-9]+(?:\.[0-9]+)?)", text)
    if match is None:
        return read_number(text, decimal)  # a single number is a range of one
    lo, hi = float(match[1]), float(match[2])
    if lo > hi:
        raise ValueError(text)
    return (lo + hi) / 2


# A column read with Arrow's kernels (clean's `parse_column`), as the parsers above read it cell
# by cell: a cell whose bare number the shape of its kind takes out, with nothing but ASCII spaces
# and tabs around it (what str.strip() removes from it), and that is a plain number under the
# column's decimal mark, is converted column-wise (grouping mark out, decimal mark to '.', cast;
# Arrow's cast and float() both round correctly). Every other cell (missing, 'inf', non-ASCII
# digits, ambiguous, unparsable, a reversed range) is left to the parsers, which say why.
_PAD = "[ \t]*"
_SHAPES = {  # kind -> (RE2 pattern of a whole cell, what to trim off it to leave what `bare` leaves)
    "number": (rf"^{_PAD}[+\-0-9.,eE]+{_PAD}$", " \t"),
    "percent": (rf"^{_PAD}[+\-0-9.,eE]+{_PAD}%?{_PAD}$", " \t%"),
    # MONEY, with one sign at most (two: the parser's to refuse)
    "money": (rf"^{_PAD}(?:-{_PAD}[$€£]?{_PAD}|[$€£]?{_PAD}-?)[0-9.,]+{_PAD}[$€£]?{_PAD}$", " \t$€£-"),
    "range_mid": (rf"^{_PAD}[+\-0-9.,eE]+{_PAD}$", " \t"),
}
_RANGE = rf"^{_PAD}(?P<lo>[0-9]+(?:\.[0-9]+)?){_PAD}-{_PAD}(?P<hi>[0-9]+(?:\.[0-9]+)?){_PAD}$"  # as _range_mid's


def read_column(
    cells: pa.Array, kind: str, declared: str | None, default: str | None
) -> tuple[str | None, np.ndarray, np.ndarray]:
    """A text column of number ``kind`` read with column operations: (its decimal mark, as
    `decimal_of` decides it from ``declared``, the cells and ``default``; the float64 values;
    a mask of the cells read). A cell not read (null, missing, or not plainly a number of its
    kind) is for the per-cell parser of PARSERS, which gives its value or says why it has none."""
    n = len(cells)
    false = arrow.scalar(False, pa.bool_())
    pattern, around = _SHAPES[kind]
    shaped = arrow.to_numpy(pc.fill_null(pc.match_substring_regex(cells, pattern), false))
    numbers = pc.utf8_trim(cells, characters=around)  # a cell's bare number where it is shaped
    fits = {
        d: shaped
        & arrow.to_numpy(pc.fill_null(pc.match_substring_regex(numbers, f"^(?:{GRAMMARS[d].pattern})$"), false))
        for d in DECIMALS
    }
    ranged = np.zeros(n, bool)
    if kind == "range_mid":
        ranges = pc.extract_regex(cells, _RANGE)
        ranged = arrow.to_numpy(ranges.is_valid())
    decimal = declared
    if declared is None:
        marks = {d for d, other in zip(DECIMALS, DECIMALS[::-1], strict=True) if (fits[d] & ~fits[other]).any()}
        if len(marks) < 2:  # the cells no shape fits (a range fits no grammar), as decimal_of reads them
            odd = ~(shaped | ranged) & arrow.to_numpy(cells.is_valid())
            stripped = (text.strip() for text in cells.filter(arrow.numbers(odd)).to_pylist())
            marks |= _only_marks([bare(kind, c) for c in stripped if c.lower() not in MISSING])
        decimal = _decided(marks, default)
    if decimal is not None:
        ways = {decimal: fits[decimal]}
    else:  # read_number with no mark: a cell that one mark reads, or both as the same digits
        plain = ~arrow.to_numpy(pc.fill_null(pc.match_substring_regex(numbers, "[.,]"), false))
        ways = {".": fits["."] & (~fits[","] | plain), ",": fits[","] & ~fits["."]}
    values, read = np.zeros(n), np.zeros(n, bool)
    for mark, mask in ways.items():
        if not mask.any():
            continue
        group = "," if mark == "." else "."
        text = pc.replace_substring(numbers.filter(arrow.numbers(mask)), pattern=group, replacement="")
        if mark == ",":
            text = pc.replace_substring(text, pattern=",", replacement=".")
        values[mask] = arrow.to_numpy(pc.cast(text, pa.float64()))
        read |= mask
    if kind == "money":
        negative = read & arrow.to_numpy(pc.fill_null(pc.match_substring(cells, "-"), false))
        values[negative] = -values[negative]
    if ranged.any():
        shown = arrow.numbers(ranged)
        lo, hi = (
            arrow.to_numpy(pc.cast(pc.struct_field(ranges, end).filter(shown), pa.float64())) for end in ("lo", "hi")
        )
        rows = np.flatnonzero(ranged)[lo <= hi]  # a reversed range is the parser's to refuse
        values[rows] = ((lo + hi) / 2)[lo <= hi]
        read[rows] = True
    return decimal, values, read


def _category(text: str, decimal: str | None = None) -> str:
    return re.sub(r"[\s_]+", "_", text.strip().lower())


# kind -> (parse one stripped, non-missing cell under a decimal mark, what a good value looks
# like, Arrow type); the numbers' parsers raise NotANumber saying why a cell is not one.
PARSERS: dict[str, tuple[Callable[[str, str | None], Any], str, pa.DataType]] = {
    "number": (_number, "a number like '42.5'", pa.float64()),
    "percent": (_percent, "a percentage like '12.5%'", pa.float64()),
    "money": (_money, "an amount like '$12,000.00'", pa.float64()),
    "range_mid": (_range_mid, "a range like '675-679'", pa.float64()),
    "category": (_category, "a category name", pa.string()),
}


def resolve_features(schema: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """``schema`` with ``features: null`` made explicit: every column of ``columns`` but the key
    and the label (and cairn's own key, partition and problem columns)."""
    if schema.get("features") is not None or schema.get("image"):
        return schema
    skip = {schema["label"], schema.get("key"), "key", "partition", "problem"}  # steps.read.columns.OWN
    features = [c for c in columns if c not in skip]
    if not features:
        raise BadInput(f"ingest: features: null, but there is no column besides the label '{schema['label']}'")
    return {**schema, "features": features}
