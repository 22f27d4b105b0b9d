"""split: train / val / test holdout, decided per row from a hash of its key.

A row's set depends only on (seed, key), never on the other rows, so appending data never
moves an old row to another set. Hashing is independent of the label, so each class is
split in the same proportions in expectation (stratified); `split_report` shows the
per-class counts so a user can see the realised shares.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps import StepError

SETS = ("train", "val", "test")


class SplitError(StepError):
    """A split that cannot be used: a set or a class left empty."""


def unit_hash(keys: list[str], seed: int) -> np.ndarray:
    """A number in [0, 1) per key, uniform and fixed for a given (seed, key)."""
    salt = f"{seed}:".encode()
    return (
        np.array(
            [int.from_bytes(hashlib.blake2b(salt + k.encode(), digest_size=8).digest(), "big") for k in keys],
            dtype=np.float64,
        )
        / 2.0**64
    )


def assign(table: pa.Table, seed: int, val: float, test: float, test_partition: str | None) -> np.ndarray:
    """The set ('train', 'val' or 'test') of each row.

    Rows of ``test_partition`` (a raw partition that is a holdout as a whole, such as MNIST's
    official test images) go to test; the others go to test with probability ``test`` and to
    val with probability ``val``.
    """
    if not (0 <= val and 0 <= test and val + test < 1):
        raise SplitError(f"split: val {val} and test {test} must be shares with val + test < 1")
    u = unit_hash(table.column("key").to_pylist(), seed)
    sets = np.where(u < test, "test", np.where(u < test + val, "val", "train")).astype(object)
    if test_partition is not None:
        in_holdout = pc.equal(table.column("partition"), test_partition).to_numpy(zero_copy_only=False)
        if not in_holdout.any():
            raise SplitError(f"split: test_partition '{test_partition}' has no rows")
        sets = np.where(in_holdout, "test", sets)
    return sets.astype(str)


def split(table: pa.Table, label: str, params: dict[str, Any]) -> dict[str, pa.Table]:
    """Tables for train, val and test. Raises SplitError when one would be empty or miss a class."""
    sets = assign(table, params["seed"], params["val"], params["test"], params.get("test_partition"))
    tables = {name: table.filter(pa.array(sets == name)) for name in SETS}
    for name, part in tables.items():
        if part.num_rows == 0:
            raise SplitError(f"split: the {name} set is empty; {table.num_rows} rows are too few for these shares")
    if _is_value(table, label):
        return tables  # a regression target: no classes to check
    missing = set(table.column(label).to_pylist()) - set(tables["train"].column(label).to_pylist())
    if missing:
        raise SplitError(f"split: train has no rows of class {sorted(missing)[0]!r}; the model could not learn it")
    return tables


def _is_value(table: pa.Table, label: str) -> bool:
    return pa.types.is_floating(table.schema.field(label).type)


def split_report(tables: dict[str, pa.Table], label: str) -> dict[str, Any]:
    """Rows per set and, for a class label, per class in each set."""
    report: dict[str, Any] = {}
    for name, part in tables.items():
        if _is_value(part, label):
            report[name] = {"rows": part.num_rows}
            continue
        counts = pc.value_counts(part.column(label)).to_pylist()
        report[name] = {
            "rows": part.num_rows,
            "per_class": {str(c["values"]): c["counts"] for c in sorted(counts, key=lambda c: str(c["values"]))},
        }
    return report
