"""The rules a workload's schema (params.yaml ``schema``) names, shared by ingest, clean and the
models: how a text cell of each ``parse`` kind becomes a value, what counts as missing, and which
columns are features when ``features`` is null. Its own module so that a model depends on these
rules, not on the readers and checks around them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from steps.errors import BadInput

MISSING = {"", "n/a", "na", "nan", "null", "none", "-", "?"}


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


def resolve_features(schema: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """``schema`` with ``features: null`` made explicit: every column of ``columns`` but the key
    and the label (and cairn's own key, partition and problem columns)."""
    if schema.get("features") is not None or schema.get("image"):
        return schema
    skip = {schema["label"], schema.get("key"), "key", "partition", "problem"}
    features = [c for c in columns if c not in skip]
    if not features:
        raise BadInput(f"ingest: features: null, but there is no column besides the label '{schema['label']}'")
    return {**schema, "features": features}
