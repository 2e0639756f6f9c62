"""Every Spark SQL type Arrow carries round-trips exactly; bad types fail before any work."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ftbridge
from ftbridge.convert.ops.rowcheck import read_all, spark_to_arrow
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
            dt.datetime(2021, 3, 4, 5, 6, 7, i * 1000, tzinfo=dt.UTC),
            dt.datetime(2022, 1, 1, 0, 0, 0, i),
            None if null else [i, None, -i], (i, f"y{i}"), {f"k{i}": float(i), "z": None},
            [(f"k{i}", [i, i + 1])],
        ))
    return out


@pytest.mark.core
def test_every_arrow_type_round_trips(spark, tmp_path):
    df = spark.createDataFrame(rows(), ALL_TYPES).repartition(3)
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    expected = spark_to_arrow(df).sort_by("id")
    got = read_all(ds).sort_by("id")
    assert got.schema.equals(expected.schema), f"{got.schema}\n!=\n{expected.schema}"
    assert got.equals(expected)


@pytest.mark.core
def test_empty_dataframe_keeps_its_schema(spark, tmp_path):
    df = spark.createDataFrame(rows(), ALL_TYPES).where("id < 0")
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    assert ds.count() == 0
    table = read_all(ds)
    assert table.num_rows == 0 and table.schema.names == df.columns


@pytest.mark.core
def test_all_null_nested_columns_cross_ray_data(spark, tmp_path):
    """Spark writes an all-null list/string/map array with an empty offsets buffer; Ray's Arrow
    serializer validates arrays, so such a block must be repaired before Ray Data holds it."""
    ddl = "id BIGINT, a ARRAY<BINARY>, s STRING, m MAP<STRING, INT>, st STRUCT<x: ARRAY<INT>>"
    df = spark.createDataFrame([(1, None, None, None, (None,)), (2, None, None, None, None)], ddl).coalesce(1)
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    got = read_all(ds).sort_by("id")
    got.validate(full=True)
    assert got.equals(spark_to_arrow(df).sort_by("id"))
    # Blocks cross Ray workers (executors hold every CPU here, so the transform asks for none).
    # (Ray Data's own count() would ask for a CPU, so the rows are read back instead.)
    moved = ds.map_batches(lambda b: b, batch_format="pyarrow", num_cpus=0).materialize()
    assert read_all(moved).sort_by("id").equals(got)


@pytest.mark.core
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


def assert_round_trips(df, tmp_path) -> None:
    """The Dataset of `df` equals PySpark's own `toArrow()` of it: schema, values, row for row."""
    ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    got = read_all(ds).sort_by("id")
    expected = spark_to_arrow(df).sort_by("id")
    assert got.schema.equals(expected.schema), f"{got.schema}\n!=\n{expected.schema}"
    assert got.equals(expected)
    ftbridge.release(ds)


def _spark_minor(spark) -> tuple[int, int]:
    major, minor = spark.version.split(".")[:2]
    return int(major), int(minor)


SQL_TYPES = {
    # name: (SQL expression, lowest Spark that has it)
    "char_varchar": ("CAST(concat('c', id) AS CHAR(4)) AS ch, CAST(concat('v', id) AS VARCHAR(6)) AS vc", (3, 5)),
    "day_time_interval": ("make_dt_interval(id, 2, 3, 4.5) AS dti", (3, 5)),
    "null_column": ("NULL AS n", (3, 5)),
    "nested_timestamps": ("array(timestamp_seconds(id * 1000)) AS ats, "
                          "named_struct('t', timestamp_seconds(id)) AS sts", (3, 5)),
}


@pytest.mark.parametrize("name", sorted(SQL_TYPES))
@pytest.mark.core
def test_sql_types_round_trip(spark, tmp_path, name):
    expr, since = SQL_TYPES[name]
    if _spark_minor(spark) < since:
        pytest.skip(f"Spark {spark.version} has no {name}")
    df = spark.sql(f"SELECT id, {expr} FROM range(0, 40, 1, 3)")
    assert_round_trips(df, tmp_path)


@pytest.mark.parametrize("conf", [
    {"spark.sql.session.timeZone": "America/Los_Angeles"},
    {"spark.sql.session.timeZone": "Asia/Kolkata", "spark.sql.execution.arrow.maxRecordsPerBatch": "7"},
    {"spark.sql.execution.arrow.useLargeVarTypes": "true"},
    {"spark.sql.execution.arrow.useLargeVarTypes": "false"},
], ids=["tz-la", "tz-kolkata-small-batches", "large-var-types", "regular-var-types"])
@pytest.mark.core
def test_session_arrow_settings_round_trip(spark, tmp_path, conf):
    """Every session setting that shapes Spark's Arrow output still gives exactly `df.toArrow()`."""
    before = {key: spark.conf.get(key, None) for key in conf}
    try:
        for key, value in conf.items():
            spark.conf.set(key, value)
        df = spark.createDataFrame(rows(), ALL_TYPES).repartition(3)
        assert_round_trips(df, tmp_path)
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


REFUSED = {
    # column name: (SQL expression, lowest Spark that has the type)
    "cal_interval": ("make_interval(0, 1) AS cal_interval", (3, 5)),
    "ym_interval": ("make_ym_interval(1, 2) AS ym_interval", (3, 5)),
    "nested_interval": ("array(make_interval(0, 1)) AS nested_interval", (3, 5)),
    "variant_col": ("parse_json('{\"a\": 1}') AS variant_col", (4, 0)),
    "time_col": ("to_time('12:34:56') AS time_col", (4, 1)),
}


def _probe_job(spark) -> int:
    """The id of a one-job probe. Spark numbers every job of a context in order, whatever its
    group, so two probes whose ids differ by one had no job between them."""
    sc = spark.sparkContext
    group = f"ftbridge-test-probe-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "probe")
    try:
        sc.parallelize([0], 1).count()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    (job,) = sc.statusTracker().getJobIdsForGroup(group)
    return job


@pytest.mark.parametrize("column", sorted(REFUSED))
@pytest.mark.core
def test_types_without_an_exact_arrow_form_are_refused_up_front(spark, tmp_path, column):
    expr, since = REFUSED[column]
    if _spark_minor(spark) < since:
        pytest.skip(f"Spark {spark.version} has no such type")
    if column == "time_col":  # Spark 4.1+ keeps TIME behind a flag
        spark.conf.set("spark.sql.timeType.enabled", "true")
    try:
        df = spark.sql(f"SELECT 1 AS ok, {expr}")
        if column == "time_col":
            _ = df.schema  # resolved while the flag is on
    finally:
        if column == "time_col":
            spark.conf.unset("spark.sql.timeType.enabled")
    job_before = _probe_job(spark)
    with pytest.raises(UnsupportedTypeError, match=f"'{column}'") as err:
        ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
    assert err.value.column == column
    assert not (tmp_path / "c.duckdb").exists()  # refused before the catalog or any Spark job
    assert _probe_job(spark) == job_before + 1, "a Spark job ran between the two probes"
