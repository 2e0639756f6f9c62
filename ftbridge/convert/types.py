"""Which Spark types a conversion carries, and the Arrow schema of the Dataset.

Two steps, both before any Spark job runs:

1. `check_supported` walks the DataFrame's schema (public `pyspark.sql.types`) against an
   allow-list, so a column Arrow or Ray Data cannot carry exactly is refused with an
   `UnsupportedTypeError` that names it - on every PySpark release of the matrix.
2. `dataset_schema` derives the Dataset's schema from the Arrow schema Spark's own JVM writes
   ahead of the batches (the bytes in the spill files), normalised the way PySpark's
   `df.toArrow()` presents it: timestamps in UTC, list items named `item`. Spark's choice of
   large or regular var types (`spark.sql.execution.arrow.useLargeVarTypes`) is kept, so a
   read never casts between them.
"""

from __future__ import annotations

import base64

import pyarrow as pa

from ftbridge.adapters import spark as spark_adapter
from ftbridge.common.errors import UnsupportedTypeError

# Spark type classes (by name: some do not exist on older releases) carried exactly.
_SCALARS = {
    "NullType", "BooleanType", "ByteType", "ShortType", "IntegerType", "LongType", "FloatType",
    "DoubleType", "DecimalType", "StringType", "CharType", "VarcharType", "BinaryType", "DateType",
    "TimestampType", "TimestampNTZType", "DayTimeIntervalType",
}
_NESTED = {"ArrayType", "MapType", "StructType"}
_HINT = "Cast or drop the column before converting (e.g. df.withColumn(name, col(name).cast('string')))."


def _unsupported(column: str, spark_type: str, where: str = "", cause: Exception | None = None):
    inner = f" (at {where})" if where and where != column else ""
    because = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause and str(cause) else ""
    return UnsupportedTypeError(
        f"column {column!r} has type {spark_type}{inner}, which ftbridge cannot carry through Arrow exactly"
        f"{because}. {_HINT}", column=column, spark_type=spark_type)


def _bad_part(dt, path: str) -> tuple[str, object] | None:
    """(path, type) of the first unsupported type inside `dt`, or None."""
    name = type(dt).__name__
    if name in _SCALARS:
        return None
    if name == "ArrayType":
        return _bad_part(dt.elementType, f"{path}[]")
    if name == "MapType":
        return _bad_part(dt.keyType, f"{path}.key") or _bad_part(dt.valueType, f"{path}.value")
    if name == "StructType":
        for field in dt.fields:
            found = _bad_part(field.dataType, f"{path}.{field.name}")
            if found:
                return found
        return None
    return path, dt


def check_supported(spark_schema) -> None:
    """Raise UnsupportedTypeError naming the first column whose type is not carried exactly."""
    for field in spark_schema.fields:
        found = _bad_part(field.dataType, field.name)
        if found:
            where, dt = found
            raise _unsupported(field.name, field.dataType.simpleString(), where)


def dataframe_schema(df):
    """`df.schema`; when PySpark cannot even describe a JVM type (3.5: intervals), an
    UnsupportedTypeError naming the column instead of a parse error."""
    try:
        return df.schema
    except Exception as exc:
        for name, simple, text in spark_adapter.jvm_schema_fields(df):
            try:
                spark_adapter.parse_type_json(text)
            except Exception:
                raise _unsupported(name, simple) from exc
        raise


def _normalise(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t) and t.tz is not None:
        return pa.timestamp(t.unit, "UTC")  # Spark labels with the session zone; same instants
    if pa.types.is_large_list(t):
        return pa.large_list(pa.field("item", _normalise(t.value_type), t.value_field.nullable))
    if pa.types.is_list(t):
        return pa.list_(pa.field("item", _normalise(t.value_type), t.value_field.nullable))
    if pa.types.is_map(t):
        return pa.map_(pa.field("key", _normalise(t.key_type), False),
                       pa.field("value", _normalise(t.item_type), t.item_field.nullable))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _normalise(f.type), f.nullable) for f in t])
    return t


def dataset_schema(spark_arrow_schema: pa.Schema) -> pa.Schema:
    """The Dataset's schema from the schema Spark writes into the spill files."""
    return pa.schema([pa.field(f.name, _normalise(f.type), f.nullable) for f in spark_arrow_schema])


def schema_of_message(message: bytes) -> pa.Schema:
    """A pyarrow schema from an IPC schema message."""
    return pa.ipc.read_schema(pa.py_buffer(message))


def schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_b64(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
