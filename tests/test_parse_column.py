"""clean's parse_column reads the plain numbers of a column with Arrow's kernels and leaves the
other cells to the per-cell parsers (steps.schema.read_column): the same values, to the bit, and
the same reasons as reading every cell in Python, the way it was done before (kept here as the
reference), for every parse kind and decimal mark."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from steps import arrow, clean, schema
from steps.schema import MISSING, PARSERS, NotANumber, bare, decimal_of


def reference(
    values: list[str | None], name: str, kind: str, decimal: str | None = None, default: str | None = "."
) -> tuple[pa.Array, list]:
    """parse_column as it was: every cell read in Python under both decimal grammars."""
    parse, expected, arrow_type = PARSERS[kind]
    cells = [None if text is None else text.strip() for text in values]
    present = [c for c in cells if c is not None and c.lower() not in MISSING]
    decimal = decimal_of([bare(kind, c) for c in present], decimal, default) if arrow_type == pa.float64() else decimal
    out: list[Any] = []
    reasons: list = []
    for text, stripped in zip(values, cells, strict=True):
        if stripped is None or stripped.lower() in MISSING:
            out.append(None)
            reasons.append(("missing value", f"missing value in column '{name}'"))
            continue
        try:
            out.append(parse(stripped, decimal))
            reasons.append(None)
        except NotANumber as err:
            out.append(None)
            kind_ = "ambiguous number" if err.ambiguous else "unparsable value"
            why = str(err) if err.ambiguous or "decimal mark" in str(err) else f"expected {expected}"
            reasons.append((kind_, f"column '{name}' has {text!r}{',' if err.ambiguous else ';'} {why}"))
        except ValueError:
            out.append(None)
            reasons.append(("unparsable value", f"column '{name}' has {text!r}; expected {expected}"))
    return arrow.array(out, arrow_type), reasons


def bits(column: pa.Array) -> list:
    """Each value as its bytes (a float's sign, NaN payload and all), None for a null."""
    return [v if v is None or isinstance(v, str) else struct.pack("<d", v) for v in column.to_pylist()]


DIGITS = st.text("0123456789", min_size=1, max_size=7)
GROUPED = st.builds(
    lambda head, groups, mark, frac, group: head + "".join(group + g for g in groups) + (mark + frac if frac else ""),
    st.integers(1, 999).map(str),
    st.lists(st.text("0123456789", min_size=3, max_size=3), max_size=3),
    st.sampled_from([".", ","]),
    st.text("0123456789", max_size=3),
    st.sampled_from([",", ".", ""]),
)
NUMBER = st.one_of(DIGITS, GROUPED, st.builds(lambda a, m, b: a + m + b, DIGITS, st.sampled_from(".,"), DIGITS))
SIGNED = st.builds(lambda s, n, e: s + n + e, st.sampled_from(["", "-", "+"]), NUMBER,
                   st.sampled_from(["", "", "e5", "E-3", "e+12", "e400"]))  # fmt: skip
PAD = st.sampled_from(["", "", " ", "  ", "\t", "\xa0", "\n", "\u2003"])
PLAIN = st.one_of(
    SIGNED,
    st.builds(lambda n: n + "%", SIGNED),
    st.builds(lambda n, p: n + p + "%", SIGNED, PAD),
    st.builds(
        lambda s, c, p, n, t: s + c + p + n + t,
        st.sampled_from(["", "-", "--"]),
        st.sampled_from(["$", "€", "£", ""]),
        PAD,
        NUMBER,
        st.sampled_from(["", " €", "$", "-"]),
    ),  # fmt: skip
    st.builds(lambda c, s, n: c + s + n, st.sampled_from(["$", "€", "£"]), st.sampled_from(["-", " -", "+"]), NUMBER),
    st.builds(
        lambda lo, p, hi: f"{lo}{p}-{p}{hi}",
        st.sampled_from(["10", "675", "1.5", "0", "20.25", "9" * 320]),
        PAD,
        st.sampled_from(["20", "679", "1.5", "2", "7.75", "05"]),
    ),  # fmt: skip
)
ODD = st.sampled_from(
    ["inf", "-inf", "+Infinity", "nan", "NaN", "-nan", "n/a", "NA", "null", "None", "-", "?", "", " ", "1_000",
     "٣", "١٢.٥", "1e", "e5", ".", ",", "$", "%", "12%%", "1.2.3", "1,,2", "abc", "0x10", "10-", "-10-20"]
)  # fmt: skip
PIECES = st.lists(st.sampled_from(list("0123456789.,.,  $€£%-+eE_٣\t") + ["inf", "nan", "n/a"]), max_size=8).map(
    "".join
)
CELL = st.builds(lambda a, c, b: a + c + b, PAD, st.one_of(PLAIN, PLAIN, ODD, PIECES), PAD)
COLUMN = st.lists(st.one_of(st.none(), CELL, CELL, CELL), max_size=12)


@settings(max_examples=2000, deadline=None)
@given(
    COLUMN,
    st.sampled_from(list(PARSERS)),
    st.sampled_from([".", ",", None]),
    st.sampled_from([".", ",", None]),
)
@example(["$12,000.00", "-$5", "$ 1.000,50", "1.000", None, "n/a"], "money", None, ".")
@example(["720-724", "10-5", "700.5", "7,5", "1,000"], "range_mid", None, None)
@example(["13.5%", "12,5 %", "1.000%", "+inf%", "-0"], "percent", None, ",")
def test_the_column_is_read_as_each_cell_in_python_reads_it(values, kind, decimal, default):
    typed, reasons = clean.parse_column(values, "c", kind, decimal, default)
    expected, expected_reasons = reference(values, "c", kind, decimal, default)
    typed.validate(full=True)
    assert typed.type == expected.type
    assert bits(typed) == bits(expected)
    assert reasons == expected_reasons


def test_plain_numbers_are_read_column_wise_and_only_the_others_cell_by_cell():
    cells = arrow.array(["$12,000.00", " -$5 ", "$1,234.5", "n/a", None, "$inf", "$1.000"], pa.string())
    decimal, values, read = schema.read_column(cells, "money", None, None)
    assert decimal == "."
    assert read.tolist() == [True, True, True, False, False, False, True]
    assert values[read].tolist() == [12000.0, -5.0, 1234.5, 1.0]
    ranges = arrow.array(["720-724", "10 - 5", "1,5", "7"], pa.string())
    decimal, values, read = schema.read_column(ranges, "range_mid", None, None)
    assert decimal == ","  # '1,5' shows it; a range shows nothing
    assert read.tolist() == [True, False, True, True]  # a reversed range is the parser's to refuse
    assert values[read].tolist() == [722.0, 1.5, 7.0]
    assert np.all(values[~read] == 0)
