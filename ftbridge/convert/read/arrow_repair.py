"""Make Spark's Arrow batches safe for Ray's Arrow serializer, without copying good data.

Spark's JVM writer leaves the offsets buffer of an *empty* variable-width array (string,
binary, list, map) empty: 0 bytes instead of one offset. Arrow allows that, and pyarrow
reads it, but Ray's Arrow serializer rebuilds every array from its buffers and refuses it
("Buffer #1 too small in array of type int32 and length 1"), so a block whose list column
holds only nulls (its child array is empty) would fail inside Ray Data. Such an empty array is
replaced by a freshly built empty one of the same type; every other array is passed through
as is (zero-copy).
"""

from __future__ import annotations

import pyarrow as pa


def _var_width(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t)
            or pa.types.is_large_binary(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
            or pa.types.is_map(t))


def _children(arr: pa.Array) -> list[pa.Array]:
    t = arr.type
    if pa.types.is_struct(t):
        return arr.flatten()
    if pa.types.is_map(t):
        return [arr.keys, arr.items]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [arr.values]
    return []


def _needs_fix(arr: pa.Array) -> bool:
    if _var_width(arr.type) and len(arr) == 0:
        offsets = arr.buffers()[1]
        return offsets is None or offsets.size == 0
    return any(_needs_fix(child) for child in _children(arr))


def _fix(arr: pa.Array) -> pa.Array:
    if not _needs_fix(arr):
        return arr
    t = arr.type
    if len(arr) == 0:
        return pa.array([], type=t)
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_struct(t):
        return pa.StructArray.from_arrays([_fix(c) for c in arr.flatten()], fields=list(t), mask=mask)
    if pa.types.is_map(t):
        return pa.MapArray.from_arrays(arr.offsets, _fix(arr.keys), _fix(arr.items), type=t, mask=mask)
    return type(arr).from_arrays(arr.offsets, _fix(arr.values), type=t, mask=mask)


def well_formed(table: pa.Table) -> pa.Table:
    """`table`, with every empty variable-width array given a real offsets buffer (see module doc)."""
    if not any(_needs_fix(chunk) for col in table.columns for chunk in col.chunks):
        return table
    columns = [pa.chunked_array([_fix(chunk) for chunk in col.chunks], type=col.type) for col in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)
