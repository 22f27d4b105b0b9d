"""Duplicates across every partition of a workload, in partition order: which rows repeat an
earlier row's key or (with ``clean.dedupe``) its values, from each row's 16-byte digests
(steps.clean.check), held sparsely so that memory follows the repeats, not the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from steps import arrow


def words(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A column of 16-byte digests as an (n, 2) array of 64-bit words, and its validity."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    data = np.frombuffer(array.buffers()[1], dtype="<u8")[2 * array.offset : 2 * (array.offset + len(array))]
    return data.reshape(-1, 2), arrow.to_numpy(array.is_valid())


def first_seen(digests: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Per row, the index of the first row ``among`` those with the same digest (-1 for rows not
    ``among``): hash factorisation of the 16-byte digests (pandas, O(n)), not a Python set of
    every row."""
    first = np.full(len(digests), -1, dtype=np.int64)
    candidates = np.nonzero(among)[0]
    first[candidates] = candidates  # each its own first, unless found below
    if len(candidates) < 2:  # nothing to repeat (scoring checks no digests)
        return first
    import pandas as pd  # here, not at the top: scoring never needs it, and it takes 0.2 s to import

    # Only rows whose first 8 bytes repeat can repeat a row: usually few, so one hash pass
    # over all rows and an exact one over those.
    rows = candidates[pd.Series(digests[candidates, 0]).duplicated(keep=False).to_numpy()]
    if len(rows) == 0:
        return first
    held = digests[rows]
    high, _ = pd.factorize(held[:, 0])
    low, lows = pd.factorize(held[:, 1])
    codes, _ = pd.factorize(high.astype(np.int64) * len(lows) + low)  # codes in order of first appearance
    is_first = np.ones(len(codes), dtype=bool)
    is_first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    first[rows] = rows[np.nonzero(is_first)[0]][codes]
    return first


@dataclass(frozen=True)
class Duplicates:
    """Across all partitions, in order: which rows repeat an earlier key or (valid) row. Sparse:
    only the repeats are held, by row position (rows counted over all partitions in order)."""

    key: np.ndarray  # ascending positions of rows whose key was seen before
    row: np.ndarray  # ascending positions of rows whose values repeat an earlier row (readable, new key)
    first: np.ndarray  # for each of ``row``, the position of the row it repeats

    @property
    def repeats(self) -> int:
        return len(self.row)

    def span(self, offset: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the ``n`` rows from ``offset``: (key repeated, row repeated) as masks, and the first
        position of each row repeat there, in order."""
        key, row = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        lo, hi = np.searchsorted(self.key, [offset, offset + n])
        key[self.key[lo:hi] - offset] = True
        lo, hi = np.searchsorted(self.row, [offset, offset + n])
        row[self.row[lo:hi] - offset] = True
        return key, row, self.first[lo:hi]

    @cached_property
    def _last_repeat(self) -> tuple[np.ndarray, np.ndarray]:
        """(each row that a later row repeats, the position of its last repeat), by the last."""
        order = np.lexsort((self.row, self.first))  # by first, then repeat position
        firsts, repeats = self.first[order], self.row[order]
        last = np.append(firsts[1:] != firsts[:-1], True) if len(firsts) else np.empty(0, bool)
        firsts, lasts = firsts[last], repeats[last]
        by_last = np.argsort(lasts, kind="stable")
        return firsts[by_last], lasts[by_last]

    def done_with(self, offset: int, n: int) -> np.ndarray:
        """The rows whose last repeat is among the ``n`` rows from ``offset``: no later row names them."""
        firsts, lasts = self._last_repeat
        lo, hi = np.searchsorted(lasts, [offset, offset + n])
        return firsts[lo:hi]

    def firsts(self, offset: int, n: int) -> np.ndarray:
        """Ascending indexes, within the ``n`` rows from ``offset``, of rows a later row repeats."""
        inside = self.first[(self.first >= offset) & (self.first < offset + n)]
        return np.unique(inside) - offset


Digests = tuple[np.ndarray, np.ndarray]  # (n, 2) 64-bit words of 16-byte digests, their row positions


def together(chunks: Iterable[Digests]) -> Iterator[Digests]:
    """All chunks as one group, in memory: 24 bytes a row. The clean stage passes a grouping
    that spills to disk by digest instead (flows/clean.py), so that memory stays flat."""
    chunks = list(chunks)
    if chunks:
        yield np.concatenate([w for w, _ in chunks]), np.concatenate([p for _, p in chunks])


def bucket_of(words: np.ndarray, bits: int) -> np.ndarray:
    """The bucket (of 2**bits) of each digest: its top bits. Equal digests share a bucket."""
    return (words[:, 0] >> np.uint64(64 - bits)).astype(np.intp) if bits else np.zeros(len(words), np.intp)


def _digest_chunks(columns: Iterable[pa.ChunkedArray | pa.Array], skip: np.ndarray) -> Iterator[Digests]:
    """Per partition: the valid digests of ``columns`` and their positions, minus the positions in
    ``skip`` (ascending)."""
    at = 0
    for column in columns:
        part, ok = words(column)
        ok = ok.copy()  # Arrow's validity, copied: it may be read-only
        lo, hi = np.searchsorted(skip, [at, at + len(part)])
        ok[skip[lo:hi] - at] = False
        yield part[ok], np.nonzero(ok)[0].astype(np.int64) + at
        at += len(part)


def _repeats(groups: Iterable[Digests]) -> tuple[np.ndarray, np.ndarray]:
    """(positions that repeat an earlier digest, the position each repeats), ascending: equal
    digests must fall in one group, and positions ascend within each group."""
    again, first = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for digests, positions in groups:
        seen = first_seen(digests, np.ones(len(digests), dtype=bool))
        repeated = np.nonzero(seen != np.arange(len(digests)))[0]
        again.append(positions[repeated])
        first.append(positions[seen[repeated]])
    again_, first_ = np.concatenate(again), np.concatenate(first)
    order = np.argsort(again_, kind="stable")
    return again_[order], first_[order]


def duplicates(
    digests: Callable[[str], Iterable[pa.ChunkedArray | pa.Array]],
    group: Callable[[Iterable[Digests]], Iterable[Digests]] = together,
) -> Duplicates:
    """Duplicates over every partition's CHECKS, in partition order; ``digests(column)`` gives
    that column of each partition in turn. ``group`` gathers the digests into groups that hold
    every copy of a digest (default: one group in memory)."""
    key, _ = _repeats(group(_digest_chunks(digests("key_digest"), np.empty(0, np.int64))))
    row, first = _repeats(group(_digest_chunks(digests("row_digest"), key)))  # a repeated key is not compared
    return Duplicates(key, row, first)


@dataclass(frozen=True)
class Marks:
    """What the duplicate check across all partitions says of one partition's rows: each a mask."""

    key: np.ndarray  # the row's key repeats an earlier row's
    row: np.ndarray  # (with dedupe) the row's values repeat an earlier row's
    row_text: list[str]  # for each row of ``row``, in order: the reason, naming the earlier row

    def digest(self) -> bytes:
        """All a partition's settled output depends on besides its own checked rows."""
        text = "\0".join(self.row_text).encode()
        return b"|".join([np.flatnonzero(self.key).tobytes(), np.flatnonzero(self.row).tobytes(), text])


def marks(
    dups: Duplicates, offset: int, n: int, dedupe: bool, key_of: dict[int, str], keys: Callable[[], pa.ChunkedArray]
) -> Marks:
    """The marks of the ``n`` rows from ``offset`` of ``dups``. With ``dedupe``, a repeated row's
    reason names the first row by its key: ``key_of`` holds those keys (filled in partition
    order, so earlier rows are there; ``keys()`` reads this partition's only when a later row
    repeats one of them, and forgets them after their last repeat). Column operations throughout:
    no Python per row."""
    key_repeated, row_repeated, first_of = dups.span(offset, n)
    if not dedupe:
        return Marks(key_repeated, np.zeros(n, dtype=bool), [])
    repeated_first = dups.firsts(offset, n)
    if len(repeated_first):
        taken = keys().take(arrow.numbers(repeated_first.astype(np.int64))).to_pylist()
        for i, key in zip(repeated_first, taken, strict=True):
            key_of[offset + int(i)] = key  # a row that a later one repeats: its key, for that one
    texts = [f"duplicate of row '{key_of[int(f)]}'" for f in first_of]
    for f in dups.done_with(offset, n).tolist():  # forgotten once no later row names them: memory stays flat
        del key_of[f]
    return Marks(key_repeated, row_repeated, texts)
