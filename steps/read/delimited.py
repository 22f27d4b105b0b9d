"""Delimited text (CSV, TSV, semicolons, pipes) read into an ingested table: whole
(``from_csv``), a number of records at a time from bytes in memory (``csv_chunks``, scoring) or a
block at a time from a stream (``csv_stream``). Every raw line is a header, a row, a blank line
or a row with a ``problem`` (a malformed line, a cell that is not a number) that clean quarantines.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from steps import arrow
from steps.errors import IngestError
from steps.read.columns import project, require_columns, text_columns, unused_columns, wanted_columns
from steps.read.numbers import DECIMAL_KEY, decimal_marks, to_numbers
from steps.read.records import (
    DELIMITERS,
    Lines,
    blank_spaces,
    csv_record_lines,
    decode,
    last_record_end,
    record_ends,
    record_lines,
    sniff,
)
from steps.schema import PARSERS, resolve_features


def from_csv(
    data: bytes, partition: str, schema: dict[str, Any], info: dict | None = None, lines_before: int = 0
) -> pa.Table:
    """Parse one delimited text partition. Blanks and 'NaN' become nulls, which clean quarantines.
    Columns that clean parses (``schema.parse``) or that are categories stay text; malformed
    lines (wrong field count) become rows with a ``problem``, quarantined by clean. Keys name
    the file line of each row. ``info``, when given, receives how the file was read: encoding,
    delimiter, and its lines (header + rows + blank lines). ``lines_before``: lines of the file
    that ``data`` leaves out after its header (a chunk of it, ``csv_chunks``).

    Raises IngestError naming the partition, column and line for an empty file, a missing
    column, or a numeric feature cell that is not a number.
    """
    data, encoding = decode(data, partition)
    # Blank lines before the header are skipped too; line numbers still count them.
    stripped = data.lstrip(b"\r\n")
    leading, data = data[: len(data) - len(stripped)].count(b"\n"), stripped
    shift = leading + lines_before  # from a line of ``data`` to the line of the file
    if not data.strip():
        raise IngestError(
            f"ingest: {partition} is empty; expected a header line with the columns {', '.join(wanted_columns(schema))}"
        )
    if schema.get("image"):
        raise IngestError(f"ingest: {partition}: image workloads read Parquet, not CSV")
    names, delimiter = sniff(data[: data.find(b"\n") % (len(data) + 1)].decode(), schema)
    require_columns(names, schema, partition)
    schema = resolve_features(schema, names)
    quoted = b'"' in data
    data = blank_spaces(data, delimiter)
    lines = record_lines(data, delimiter)
    lines = Lines(rows=lines.rows + shift, blank=lines.blank + leading)
    malformed: dict[int, str] = {}

    def keep_malformed(row) -> str:
        # Arrow numbers the records it reads (blank lines skipped, the header is 1): the file line
        # of record n is the line of row n - 2.
        number = int(lines.rows[row.number - 2]) if 2 <= row.number < len(lines.rows) + 2 else row.number + shift
        malformed[number] = (
            f"malformed line {number}: {row.actual_columns} fields, expected {row.expected_columns}: {row.text[:80]!r}"
        )
        return "skip"

    try:
        raw = pacsv.read_csv(
            io.BytesIO(data if b"\n" in data else data + b"\n"),  # a header alone needs its line end for Arrow
            # one thread: the line number of each malformed line is known
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=keep_malformed, newlines_in_values=quoted
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as err:
        if "straddling" in str(err):  # a "line" bigger than Arrow's block: no line breaks where expected
            ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
            lengths = np.diff(np.concatenate([[-1], ends, [len(data)]]))
            longest = int(np.argmax(lengths))
            raise IngestError(
                f"ingest: {partition} line {longest + 1 + shift} is {lengths[longest] / 1e6:.1f} MB long; "
                "expected one record per line (is it a CSV file with line breaks?)"
            ) from None
        raise IngestError(f"ingest: {partition} is not a well-formed CSV file: {err}") from None
    rows = lines.rows[~np.isin(lines.rows, list(malformed))] if malformed else lines.rows
    if len(rows) != raw.num_rows and quoted:  # a quote at a field's end that is text: count again
        recount = csv_record_lines(data, delimiter).rows + shift
        rows = recount[~np.isin(recount, list(malformed))] if malformed else recount
    if len(rows) != raw.num_rows:  # line counting and Arrow disagree: number the rows instead
        rows = np.arange(2, raw.num_rows + 2) + lines_before
    numeric = [c for c in schema["features"] if c not in text_columns(schema)]
    columns = {n: raw.column(n) for n in names}
    decimals, default = decimal_marks(columns, numeric, schema, delimiter)
    problems: dict[int, str] = {}  # row -> why a cell of it is not a number (the first such cell)
    for col in numeric:
        columns[col], bad = to_numbers(columns[col].combine_chunks(), decimals[col])
        for row, (text, why) in bad.items():
            if why is None:  # text, not a number written some other way: the column needs a parse rule
                raise IngestError(
                    f"ingest: {partition} column '{col}' has {text!r} on line {rows[row]}; expected a number. "
                    f"If the column holds text such as '12.5%', '$1,200' or '700-704', name it in schema.parse "
                    f"(kinds: {', '.join(PARSERS)}) or schema.categorical in params.yaml"
                )
            problems.setdefault(row, f"column '{col}' has {text!r} on line {rows[row]}{why}")
    if problems:
        notes = [problems.get(i) for i in range(raw.num_rows)]
        columns["problem"] = arrow.array(notes, pa.string())
    table = project(pa.table(columns), partition, schema, rows, keep_problem=bool(problems))
    if malformed:
        # Lines that are not rows at all still count: quarantined by clean with their line number.
        lost = pa.table(
            {
                f.name: arrow.array([f"{partition}:{n}" for n in malformed], pa.string())
                if f.name == "key"
                else arrow.array([partition] * len(malformed), pa.string())
                if f.name == "partition"
                else arrow.array(list(malformed.values()), pa.string())
                if f.name == "problem"
                else pa.nulls(len(malformed), f.type)
                for f in table.schema
            },
            schema=table.schema,
        )
        table = pa.concat_tables([table, lost])
    if default != ".":  # what clean reads undecided number columns with (steps.clean.check)
        table = table.replace_schema_metadata({DECIMAL_KEY: default or "?"})
    if info is not None:
        info |= {
            "format": "delimited text",
            "encoding": encoding,
            "delimiter": DELIMITERS[delimiter],
            "lines": leading + data.count(b"\n") + (not data.endswith(b"\n")),
            "header_lines": 1,
            "rows": table.num_rows,
            "malformed_lines": len(malformed),
            "blank_lines_skipped": lines.blank,
        }
        if unused := unused_columns(names, schema):  # only then: what was read of other files stays as it was
            info["columns_unused"] = unused
    return table


def csv_chunks(data: bytes, partition: str, schema: dict[str, Any], rows: int = 100_000) -> Iterator[pa.Table]:
    """One delimited text partition about ``rows`` records at a time, cut where a record ends:
    the rows, keys, parsing and errors of `from_csv` over the whole file (a malformed line comes
    after its chunk's rows, not the file's), with one chunk's table in memory, not the file's."""
    text, _ = decode(data, partition)
    body = text.lstrip(b"\r\n")
    breaks, newlines = record_ends(body, sniff(body.split(b"\n", 1)[0].decode(errors="replace"), schema)[1])
    if len(breaks) <= rows + 1:  # one chunk
        yield from_csv(data, partition, schema)
        return
    leading = len(text) - len(body)
    header = body[: breaks[0] + 1]
    cuts = list(breaks[rows::rows] + 1)
    for start, end in zip([breaks[0] + 1, *cuts], [*cuts, len(body)], strict=True):
        if start < end:
            before = int(np.searchsorted(newlines, start)) - 1 + text[:leading].count(b"\n")
            yield from_csv(header + body[start:end], partition, schema, lines_before=before)


STREAM_BLOCK = 16 << 20  # bytes of text a block: peak memory ~25x this, at about the speed of 64 MB blocks


def csv_stream(
    read: Callable[[int], bytes],
    partition: str,
    schema: dict[str, Any],
    block: int = 64 << 20,
    info: dict | None = None,
) -> Iterator[pa.Table]:
    """One delimited text file read through ``read`` (a binary stream's read: ``block`` bytes at a
    time, b'' at its end), as tables of whole records: the rows, keys, parsing and errors of
    `from_csv` over the whole file, with a block or two of text in memory, not the file. Each
    block is decoded on its own (a file in two encodings reads as each part's), and the decimal
    mark that a file's other columns show is found in each block (steps.schema.file_decimal); a
    UTF-16 file is read whole. ``info``, when given, receives how the file was read, added up over the blocks."""
    first = read(block)
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # no byte 10 per line break: not cut
        yield from_csv(first + _rest(read, block), partition, schema, info)
        return
    bom = codecs.BOM_UTF8 if first.startswith(codecs.BOM_UTF8) else b""
    body = first[len(bom) :].lstrip(b"\r\n")
    leading = first[len(bom) : len(first) - len(body)].count(b"\n")
    while b"\n" not in body and (more := read(block)):
        body += more
    header = body[: body.index(b"\n") + 1] if b"\n" in body else body
    carry, before, ended = body[len(header) :], leading, False
    delimiter = sniff(header.decode(errors="replace"), schema)[1]
    read_in: list[dict] = []
    while not ended:
        more = read(block)
        ended = not more
        carry += more
        cut = len(carry) if ended else last_record_end(carry, delimiter)
        if cut == 0 and not (ended and not read_in):
            continue  # no whole record yet: a record longer than a block
        piece, carry = carry[:cut], carry[cut:]
        read_in.append({})
        yield from_csv(bom + header + piece, partition, schema, read_in[-1], lines_before=before)
        before += piece.count(b"\n")
    if info is not None:
        info |= read_in[0] | {k: sum(r[k] for r in read_in) for k in ("rows", "malformed_lines", "blank_lines_skipped")}
        info["encoding"] = next((r["encoding"] for r in read_in if r["encoding"] != "utf-8"), info["encoding"])
        info["lines"] = leading + 1 + sum(r["lines"] - 1 for r in read_in)  # the header, once


def _rest(read: Callable[[int], bytes], block: int) -> bytes:
    parts = []
    while more := read(block):
        parts.append(more)
    return b"".join(parts)
