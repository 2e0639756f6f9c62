"""Spark schema -> Arrow schema, checked column by column before any work starts."""

from __future__ import annotations

import pyarrow as pa

from ftbridge.errors import UnsupportedTypeError


def _to_arrow_type(dt):
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        return to_arrow_type(dt, timestamp_utc=True)
    except TypeError:  # PySpark 3.5 has no timestamp_utc argument
        return to_arrow_type(dt)


def arrow_schema(spark_schema) -> pa.Schema:
    """Arrow schema for a Spark StructType; UnsupportedTypeError names the first bad column."""
    fields = []
    for field in spark_schema.fields:
        try:
            arrow_type = _to_arrow_type(field.dataType)
        except Exception as exc:  # PySpark raises several types for unsupported types
            raise UnsupportedTypeError(
                f"column {field.name!r} has type {field.dataType.simpleString()}, which ftbridge cannot carry "
                f"through Arrow ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Cast or "
                "drop the column before converting (e.g. df.withColumn(name, col(name).cast('string'))).",
                column=field.name, spark_type=field.dataType.simpleString()) from exc
        fields.append(pa.field(field.name, arrow_type, nullable=field.nullable))
    return pa.schema(fields)


def dataframe_schema(df):
    """`df.schema`; when PySpark cannot even describe a JVM type (3.5: interval), an
    UnsupportedTypeError naming the column instead of a parse error."""
    try:
        return df.schema
    except Exception as exc:
        from pyspark.sql.types import _parse_datatype_json_string

        for field in df._jdf.schema().fields():
            try:
                _parse_datatype_json_string(field.dataType().json())
            except Exception:
                spark_type = field.dataType().simpleString()
                raise UnsupportedTypeError(
                    f"column {field.name()!r} has type {spark_type}, which ftbridge cannot carry through Arrow. "
                    "Cast or drop the column before converting (e.g. df.withColumn(name, col(name).cast('string'))).",
                    column=field.name(), spark_type=spark_type) from exc
        raise


def schema_to_b64(schema: pa.Schema) -> str:
    import base64

    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_b64(text: str) -> pa.Schema:
    import base64

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
