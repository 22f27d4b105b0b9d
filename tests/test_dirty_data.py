"""Parsing and quarantine of dirty raw data: every parser, every reason, counts that reconcile."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

from flows import config
from steps import clean, ingest, sources

# The loans workload's sections as its stages hand them to the steps (defaults filled in).
LOANS = {s: config.workload("loans", ROOT / "params.yaml").settings(s) for s in ("source", "schema", "clean")}


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("number", " 42.5 ", 42.5),
        ("percent", "12.5%", 12.5),
        ("percent", "7", 7.0),
        ("money", "$12,000.00", 12000.0),
        ("money", "350", 350.0),
        ("range_mid", "675-679", 677.0),
        ("range_mid", "700", 700.0),
        ("category", " Credit_Card ", "credit_card"),
        ("category", "DEBT CONSOLIDATION", "debt_consolidation"),
    ],
)
def test_parsers_read_what_exports_write(kind, text, value):
    typed, reasons = clean.parse_column([text], "c", kind)
    assert typed.to_pylist() == [value] and reasons == [None]


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        ("percent", "abc%", "column 'c' has 'abc%'; expected a percentage like '12.5%'"),
        (
            "money",
            "$12,00.00",
            "column 'c' has '$12,00.00'; expected an amount like '$12,000.00'",
        ),  # '$12.000,00': 12000 (#26)
        ("range_mid", "679-675", "column 'c' has '679-675'; expected a range like '675-679'"),
        ("number", "twelve", "column 'c' has 'twelve'; expected a number like '42.5'"),
        ("money", "n/a", "missing value in column 'c'"),
        ("category", "  ", "missing value in column 'c'"),
    ],
)
def test_unparsable_and_missing_cells_have_a_reason(kind, text, reason):
    typed, reasons = clean.parse_column([text], "c", kind)
    assert typed.to_pylist() == [None]
    assert reasons[0][1] == reason


def test_unknown_parser_is_a_clear_error():
    with pytest.raises(clean.BadInput, match="schema.parse.c is 'date'; expected one of number, percent"):
        clean.parse_column(["x"], "c", "date")


@pytest.fixture(scope="module")
def loans():
    source = LOANS["source"] | {"rows": 3000}
    raw = sources.loans(source)
    table = ingest.from_csv(raw, "loans.csv", LOANS["schema"])
    return raw, table, clean.clean(table, LOANS["schema"], LOANS["clean"])


def test_every_raw_line_is_a_row_and_every_row_is_kept_or_quarantined(loans):
    raw, table, result = loans
    data_lines = raw.decode().count("\n") - 1  # minus the first header line
    assert table.num_rows == data_lines
    r = result.report
    assert r["rows_in"] == data_lines == r["rows_kept"] + r["rows_quarantined"]
    assert sum(r["quarantined_by_reason"].values()) == r["rows_quarantined"]


def test_each_kind_of_dirt_is_quarantined_with_its_reason(loans):
    _, _, result = loans
    kinds = set(result.report["quarantined_by_reason"])
    assert {"unreadable line", "repeated header line", "duplicate row", "missing value", "out of range"} <= kinds
    reasons = result.quarantined.column("reason").to_pylist()
    assert any(r.startswith("malformed line ") and "fields, expected 6" in r for r in reasons)
    assert any(r.startswith("duplicate of row 'loans.csv:") for r in reasons)
    assert any("value 1e+08 in column 'annual_income' outside [0, 5e+06]" in r for r in reasons)


def test_kept_rows_are_typed_and_categories_normalised(loans):
    _, _, result = loans
    kept = result.kept
    assert str(kept.schema.field("int_rate").type) == "double"
    assert set(kept.column("purpose").to_pylist()) == set(sources.PURPOSES)
    assert set(kept.column("defaulted").to_pylist()) == {"0", "1"}
    assert kept.column("fico_range").null_count == 0


def test_the_generated_sources_are_seeded():
    assert sources.loans(LOANS["source"] | {"rows": 50}) == sources.loans(LOANS["source"] | {"rows": 50})
    sales = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]["sales"]["source"]
    assert sources.sales(sales) == sources.sales(sales)
    assert sources.sales(sales) != sources.sales(sales | {"seed": 1})
