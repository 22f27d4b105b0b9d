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

from steps import BadInput

SETS = ("train", "val", "test")


class SplitError(BadInput):
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


def draw(keys: list[str], seed: int, val: float, test: float) -> np.ndarray:
    """The set of each key as an index into SETS: test with probability ``test``, val with
    probability ``val``, from the key's hash alone."""
    if not (0 <= val and 0 <= test and val + test < 1):
        raise SplitError(f"split: val {val} and test {test} must be shares with val + test < 1")
    u = unit_hash(keys, seed)
    return np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype(np.uint8)


def assign(table: pa.Table, seed: int, val: float, test: float, test_partition: str | None,
           drawn: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The set ('train', 'val' or 'test') of each row.

    Rows of ``test_partition`` (a raw partition that is a holdout as a whole, such as MNIST's
    official test images) go to test; the others as ``draw`` says (``drawn``: its result for
    these rows' keys, when known already).
    """
    if drawn is None:
        drawn = draw(table.column("key").to_pylist(), seed, val, test)
    sets = np.array(SETS)[drawn].astype(object)
    if test_partition is not None:
        in_holdout = pc.equal(table.column("partition"), test_partition).to_numpy(zero_copy_only=False)
        sets = np.where(in_holdout, "test", sets)
    return sets.astype(str)


def deal(table: pa.Table, label: str, params: dict[str, Any], drawn: np.ndarray | None = None
         ) -> tuple[dict[str, pa.Table], dict[str, Any]]:  # fmt: skip
    """The rows of ``table`` (a partition, or the whole data) dealt to train, val and test, and
    their counts: rows per set, per class for a class label, rows of the test partition."""
    sets = assign(table, params["seed"], params["val"], params["test"], params["test_partition"], drawn)
    holdout = 0
    if params["test_partition"] is not None:
        holdout = int(pc.sum(pc.equal(table.column("partition"), params["test_partition"])).as_py() or 0)
    is_value = _is_value(table, label)
    tables = {name: table.filter(pa.array(sets == name)) for name in SETS}
    per_class: dict[str, dict[str, int]] = {name: {} for name in SETS}
    if not is_value:
        for name, part in tables.items():
            for c in pc.value_counts(part.column(label)).to_pylist():
                per_class[name][str(c["values"])] = c["counts"]
    counts = {"rows": {name: part.num_rows for name, part in tables.items()}, "per_class": per_class,
              "holdout_rows": holdout, "is_value": is_value}  # fmt: skip
    return tables, counts


class Sets:
    """The counts of rows dealt to train, val and test, added up partition by partition, with
    the checks and the report that need them all."""

    def __init__(self, label: str, params: dict[str, Any]) -> None:
        self.label, self.params = label, params
        self.rows = dict.fromkeys(SETS, 0)
        self.per_class: dict[str, dict[str, int]] = {name: {} for name in SETS}
        self.holdout_rows = 0
        self.is_value: bool | None = None

    def add(self, counts: dict[str, Any]) -> None:
        """Add the counts of one partition (``deal``'s second result)."""
        self.holdout_rows += counts["holdout_rows"]
        self.is_value = counts["is_value"]
        for name in SETS:
            self.rows[name] += counts["rows"][name]
            for level, n in counts["per_class"][name].items():
                self.per_class[name][level] = self.per_class[name].get(level, 0) + n

    def check(self) -> None:
        """SplitError when a set is empty or train misses a class."""
        if self.params["test_partition"] is not None and not self.holdout_rows:
            raise SplitError(f"split: test_partition '{self.params['test_partition']}' has no rows")
        total = sum(self.rows.values())
        for name, n in self.rows.items():
            if n == 0:
                raise SplitError(f"split: the {name} set is empty; {total} rows are too few for these shares")
        if self.is_value:
            return  # a regression target: no classes to check
        seen = set().union(*(self.per_class[name] for name in SETS))
        missing = seen - set(self.per_class["train"])
        if missing:
            raise SplitError(f"split: train has no rows of class {sorted(missing)[0]!r}; the model could not learn it")

    def report(self) -> dict[str, Any]:
        """Rows per set and, for a class label, per class in each set."""
        if self.is_value:
            return {name: {"rows": self.rows[name]} for name in SETS}
        return {name: {"rows": self.rows[name], "per_class": dict(sorted(self.per_class[name].items()))}
                for name in SETS}  # fmt: skip


def split(table: pa.Table, label: str, params: dict[str, Any]) -> dict[str, pa.Table]:
    """Tables for train, val and test. Raises SplitError when one would be empty or miss a class."""
    tables, counts = deal(table, label, params)
    sets = Sets(label, params)
    sets.add(counts)
    sets.check()
    return tables


def _is_value(table: pa.Table, label: str) -> bool:
    return pa.types.is_floating(table.schema.field(label).type)
