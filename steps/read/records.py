"""Where the records of a delimited text file are: its encoding, its delimiter (sniffed from
the header), and the byte offset and file line where each record ends or starts. Quoted line
breaks are inside a record; a line of nothing but spaces is blank.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from steps.read.columns import wanted_columns

# How a text file says what it is: byte-order marks, then UTF-8, then the Windows code page
# that spreadsheets export, then latin-1 (which reads any byte).
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def decode(data: bytes, partition: str) -> tuple[bytes, str]:
    """``data`` as UTF-8 without a byte-order mark, and the encoding it was read as."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data.decode(encoding).encode(), encoding
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding in ("cp1252", "latin-1"):
        try:
            return data.decode(encoding).encode(), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 reads any byte")


def sniff(text: str, schema: dict[str, Any]) -> tuple[list[str], str]:
    """The column names of the header line and the delimiter: the one of ``DELIMITERS`` under
    which the header names the most of the schema's columns (then the most columns)."""

    def names(delimiter: str) -> list[str]:
        return [n.strip() for n in next(csv.reader([text], delimiter=delimiter), [])]

    wanted = wanted_columns(schema)
    scored = [(sum(w in names(d) for w in wanted), len(names(d)), d) for d in DELIMITERS]
    _, _, best = max(scored, key=lambda s: (s[0], s[1]))
    return names(best), best


@dataclass
class Lines:
    """Where each row of a text file came from: every line is a header, a row, or blank."""

    rows: np.ndarray  # the file line of each record, in order (int64)
    blank: int


def record_ends(data: bytes, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(the newlines that end a record, every newline), as byte offsets. With numpy (a 5 MB file
    in milliseconds) while every quote character is one a CSV reader sees as a quote: a newline
    ends a record unless an odd number of quotes come before it. Else (a quote that is text, as
    in ``5'10"``) Python's csv reader says where each record ends."""
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    quotes = np.flatnonzero(buf == 34)
    if not len(quotes):
        return newlines, newlines
    if not quotes_are_quoting(buf, quotes, delimiter):
        return csv_record_ends(data, delimiter, newlines), newlines
    return newlines[np.searchsorted(quotes, newlines) % 2 == 0], newlines


def quotes_are_quoting(buf: np.ndarray, quotes: np.ndarray, delimiter: str) -> bool:
    """Whether, counting every quote character as opening or closing a quoted field in turn,
    each one does what a CSV reader does with it: an opening quote starts a field (or follows a
    closing one: an escaped quote ``""``), a closing quote ends a field (or comes before an
    opening one), and the last quoted field is closed. A quote that is neither (``5'10"`` or
    ``"a"b``) is text to a reader, and the count no longer says where records end."""
    if len(quotes) % 2:
        return False
    edge = np.zeros(256, bool)
    edge[[ord(delimiter), 10, 13]] = True
    opening, closing = quotes[0::2], quotes[1::2]
    before = np.ones(len(opening), bool)  # the file's start and end are edges too
    before[opening > 0] = edge[buf[opening[opening > 0] - 1]]
    before[1:] |= opening[1:] == closing[:-1] + 1  # '""' inside a quoted field
    after = np.ones(len(closing), bool)
    inside = closing < len(buf) - 1
    after[inside] = edge[buf[closing[inside] + 1]]
    after[:-1] |= closing[:-1] + 1 == opening[1:]
    return bool(before.all() and after.all())


def blank_spaces(data: bytes, delimiter: str) -> bytes:
    """``data`` with the spaces (and tabs, unless tabs delimit) of lines that hold nothing else
    taken out, line breaks kept: such a line is a blank line, not a malformed row, and line
    numbers do not change. A line of a quoted field keeps its spaces."""
    space = b" " if delimiter == "\t" else b" \t"
    if not any(data.startswith(bytes([c])) or bytes([10, c]) in data for c in space):
        return data  # the usual file: no line starts with a space (a substring search or two, no copy)
    buf = np.frombuffer(data, np.uint8)
    breaks, _ = record_ends(data, delimiter)
    starts, ends = np.concatenate([[0], breaks + 1]), np.append(breaks, len(data))
    text = ~np.isin(buf, np.frombuffer(space + b"\r", np.uint8))
    counted = np.concatenate([[0], np.cumsum(text)])
    keep = np.ones(len(buf), bool)
    spaces = np.flatnonzero((ends > starts) & (counted[ends] == counted[starts]))  # nothing but spaces (and a CR)
    for start, end in zip(starts[spaces], ends[spaces], strict=True):
        keep[start:end] = buf[start:end] == 13
    return buf[keep].tobytes()


def csv_record_ends(data: bytes, delimiter: str, newlines: np.ndarray) -> np.ndarray:
    """The newlines that end a record, as Python's csv reader reads ``data``: the last line of
    each record (blank lines too) is the reader's line count after it."""
    reader = csv.reader(io.StringIO(data.decode()), delimiter=delimiter)
    ends = [reader.line_num - 1 for _ in reader]
    ends = np.asarray(ends, np.int64)
    return newlines[ends[ends < len(newlines)]]


def record_lines(data: bytes, delimiter: str) -> Lines:
    """The line each record starts on and the number of blank lines."""
    breaks, newlines = record_ends(data, delimiter)
    buf = np.frombuffer(data, np.uint8)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.append(breaks, len(data))  # exclusive
    crlf = np.zeros(len(starts), bool)
    has = ends > starts
    crlf[has] = buf[ends[has] - 1] == 13
    empty = (ends - starts - crlf) == 0
    if len(data) and data.endswith(b"\n"):
        starts, empty = starts[:-1], empty[:-1]  # what follows the last newline is not a line
    numbers = np.searchsorted(newlines, starts[~empty]) + 1  # the line a record starts on
    return Lines(rows=numbers[1:].astype(np.int64), blank=int(empty.sum()))


def csv_record_lines(data: bytes, delimiter: str) -> Lines:
    rows, blank, last = [], 0, 0
    reader = csv.reader(io.StringIO(data.decode()), delimiter=delimiter)
    for record in reader:
        if record:
            rows.append(last + 1)
        else:
            blank += 1
        last = reader.line_num
    return Lines(rows=np.array(rows[1:], np.int64), blank=blank)


def last_record_end(buf: bytes, delimiter: str) -> int:
    """The offset just past the last whole record of ``buf`` (which starts at a record's start;
    its end may cut one short), or 0 when it holds none."""
    array = np.frombuffer(buf, np.uint8)
    newlines = np.flatnonzero(array == 10)
    if not len(newlines):
        return 0
    quotes = np.flatnonzero(array == 34)
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    if len(ends) and quotes_are_quoting(array[: ends[-1] + 1], quotes[quotes < ends[-1]], delimiter):
        return int(ends[-1]) + 1
    ends = csv_record_ends(buf, delimiter, newlines)  # the last record may be cut short: left to the next block
    return int(ends[-2]) + 1 if len(ends) > 1 else 0
