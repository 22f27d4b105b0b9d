"""Arrow arrays from and to numpy and Python values, without pyarrow's pandas bridge.

pyarrow imports pandas (0.2 s here) the first time it converts a numpy or Python value
(`pa.array`, `pa.scalar`, `Array.to_numpy`, a Python value given to a compute function), to ask
whether it is a pandas object. A score run that finds one new inbox partition would pay that on
every run, a quarter of its time, so the steps that scoring runs (ingest's reading, clean's
checks, the features, the predictions) build and read arrays from their buffers here instead.
`tests/test_arrow.py` checks that scoring Parquet images and a dirty CSV does not import pandas.

Arrays from these functions equal pyarrow's own (`pa.array`), so the bytes written do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


def numbers(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy vector of numbers or bools (no NaN meant as null) as an Arrow array: numbers
    zero-copy, bools packed into bits; null where the bool mask ``valid`` is False (None: no
    nulls; the values under a null are kept as they are: pa.array leaves 0 there)."""
    values = np.ascontiguousarray(values)
    validity = None
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [validity, pa.py_buffer(bits)])
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [validity, pa.py_buffer(values)])


def array(values: Sequence[Any], type: pa.DataType) -> pa.Array:
    """``pa.array(values, type)`` for Python strings, bytes or numbers of a string, binary or
    number ``type``, None as null."""
    n = len(values)
    valid = [v is not None for v in values]
    validity = None if all(valid) else pa.py_buffer(np.packbits(np.array(valid, bool), bitorder="little"))
    if pa.types.is_boolean(type):
        bits = np.packbits(np.array([bool(v) for v in values], bool), bitorder="little")
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(bits)])
    if not (pa.types.is_string(type) or pa.types.is_binary(type) or pa.types.is_fixed_size_binary(type)):
        plain = np.array([0 if v is None else v for v in values], type.to_pandas_dtype())
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(plain)])
    if pa.types.is_fixed_size_binary(type):
        width = type.byte_width
        if any(v is not None and len(v) != width for v in values):
            return pa.array(values, type)  # pyarrow's own error, naming the value
        data = b"".join(b"\0" * width if v is None else v for v in values)
        return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(data)])
    encoded = [b"" if v is None else v.encode() if isinstance(v, str) else v for v in values]
    data = pa.py_buffer(b"".join(encoded))
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, n), out=offsets[1:])
    if offsets[-1] >= 2**31:  # past 32-bit offsets: pyarrow's own conversion chunks it
        return pa.array(values, type)
    return pa.Array.from_buffers(type, n, [validity, pa.py_buffer(offsets.astype(np.int32)), data])


def scalar(value: Any, type: pa.DataType) -> pa.Scalar:
    """``pa.scalar(value, type)`` for a string, bytes, number or bool (None: null)."""
    if value is None:
        return pa.nulls(1, type)[0]
    return array([value], type)[0]


def text(value: str | None) -> pa.Scalar:
    """A string scalar, for compute functions (given a Python str, they convert it with `pa.scalar`)."""
    return scalar(value, pa.string())


def to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column of numbers or bools as numpy, as ``to_numpy(zero_copy_only=False)`` gives it: a
    read-only view of numbers without nulls; NaN for nulls (as float64 for integers). Bools
    with nulls and other types: pyarrow's own way."""
    array = column
    if isinstance(column, pa.ChunkedArray):  # one chunk (a row group's column): no copy
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    boolean, number = pa.types.is_boolean(array.type), _plain_number(array.type)
    if not (number or boolean and not array.null_count):
        return array.to_numpy(zero_copy_only=False)
    validity, data = array.buffers()[:2]
    if boolean:
        return _bits(data, array.offset, len(array)).view(bool)
    dtype = np.dtype(array.type.to_pandas_dtype())
    if data is None:  # an empty array may have no buffer
        return np.empty(0, dtype)
    values = np.frombuffer(data, dtype, count=len(array), offset=array.offset * dtype.itemsize)
    if not array.null_count:
        return values
    values = values.astype(np.float64 if dtype.kind in "iu" else dtype)  # a copy, with room for NaN
    values[_bits(validity, array.offset, len(array)) == 0] = np.nan
    return values


def _bits(buffer: pa.Buffer | None, offset: int, n: int) -> np.ndarray:
    """Arrow's bitmap (least significant bit first) as one uint8 0 or 1 per item."""
    if buffer is None or n == 0:
        return np.zeros(n, np.uint8)
    return np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + n, bitorder="little")[offset:]


def _plain_number(type: pa.DataType) -> bool:
    return pa.types.is_integer(type) or pa.types.is_floating(type)
