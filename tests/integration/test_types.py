"""Every Spark SQL type Arrow carries round-trips exactly; bad types fail before any work."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ftbridge
from chaos.checker import read_all, spark_to_arrow
from ftbridge.errors import UnsupportedTypeError

ALL_TYPES = """
    id BIGINT, b BOOLEAN, i8 TINYINT, i16 SMALLINT, i32 INT, i64 BIGINT, f32 FLOAT, f64 DOUBLE,
    dec DECIMAL(20,4), s STRING, bin BINARY, d DATE, ts TIMESTAMP, ntz TIMESTAMP_NTZ,
    arr ARRAY<INT>, st STRUCT<x: INT, y: STRING>, m MAP<STRING, DOUBLE>, nested ARRAY<STRUCT<k: STRING, v: ARRAY<BIGINT>>>
"""


def rows():
    out = []
    for i in range(50):
        null = i % 7 == 3
        out.append((
            i, None if null else i % 2 == 0, i % 100, i * 3, i * 1000, i * 10**10, float(i) / 3, i / 7.0,
            None if null else decimal.Decimal(i) / 8, None if null else f"s{i}-ü✓", bytes([i % 256, 0, 255]),
            dt.date(2020, 1, 1) + dt.timedelta(days=i),
            dt.datetime(2021, 3, 4, 5, 6, 7, i * 1000, tzinfo=dt.timezone.utc),
            dt.datetime(2022, 1, 1, 0, 0, 0, i),
            None if null else [i, None, -i], (i, f"y{i}"), {f"k{i}": float(i), "z": None},
            [(f"k{i}", [i, i + 1])],
        ))
    return out


def test_every_arrow_type_round_trips(spark, tmp_path):
    df = spark.createDataFrame(rows(), ALL_TYPES).repartition(3)
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    expected = spark_to_arrow(df).sort_by("id")
    got = read_all(ds).sort_by("id")
    assert got.schema.equals(expected.schema), f"{got.schema}\n!=\n{expected.schema}"
    assert got.equals(expected)


def test_empty_dataframe_keeps_its_schema(spark, tmp_path):
    df = spark.createDataFrame(rows(), ALL_TYPES).where("id < 0")
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    assert ds.count() == 0
    table = read_all(ds)
    assert table.num_rows == 0 and table.schema.names == df.columns


def test_unsupported_type_names_the_column(spark, tmp_path):
    df = spark.sql("SELECT 1 AS ok, make_interval(0, 1) AS bad_col")
    with pytest.raises(UnsupportedTypeError, match="'bad_col'") as err:
        ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    assert err.value.column == "bad_col"
    assert not (tmp_path / "c.duckdb").exists()


_SCALARS = {
    "BIGINT": st.integers(-2**63, 2**63 - 1),
    "INT": st.integers(-2**31, 2**31 - 1),
    "DOUBLE": st.floats(allow_nan=False),
    "STRING": st.text(max_size=20),
    "BOOLEAN": st.booleans(),
    "DATE": st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 1, 1)),
    "BINARY": st.binary(max_size=16),
    "DECIMAL(12,3)": st.decimals(min_value=-10**8, max_value=10**8, places=3, allow_nan=False,
                                 allow_infinity=False),
}


@st.composite
def random_frames(draw):
    names = draw(st.lists(st.sampled_from(sorted(_SCALARS)), min_size=1, max_size=4))
    cols = [(f"c{i}", t, draw(st.booleans())) for i, t in enumerate(names)]
    n = draw(st.integers(0, 30))
    data = []
    for row_id in range(n):
        row = [row_id]
        for _, t, as_array in cols:
            value = draw(st.one_of(st.none(), _SCALARS[t]))
            row.append(None if value is None and as_array else ([value] if as_array else value))
        data.append(tuple(row))
    ddl = ", ".join(["id BIGINT"] + [f"{c} {'ARRAY<' + t + '>' if a else t}" for c, t, a in cols])
    return ddl, data


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=random_frames())
def test_random_schemas_round_trip(spark, tmp_path, frame):
    ddl, data = frame
    df = spark.createDataFrame(data, ddl).repartition(2)
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    expected = spark_to_arrow(df).sort_by("id")
    got = read_all(ds).sort_by("id")
    assert got.equals(expected), f"{ddl}\n{got.to_pylist()[:3]}\n{expected.to_pylist()[:3]}"
    ftbridge.release(ds)
