"""The "nothing lost" checker, Jepsen-style: row by row, by id and content.

Every row the conversion acknowledged must appear exactly once in what the consumer read,
with the same content: lost = ∅, duplicated = ∅, unexpected = ∅, changed = ∅, and the
order-independent content checksum equals the reference run's.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from ftbridge.adapters.spark import collect_arrow_batches, pyspark_arrow_schema

_NOT_UTF8 = ("<value not UTF-8>",)  # a tuple: its repr is no Arrow value's


def _values(column: pa.Array) -> list:
    """A column's values as Python objects; a value Python cannot decode (a string column whose
    bytes are not UTF-8: a corrupt read) becomes a marker no acknowledged row carries, so the
    checker counts that row as changed instead of failing on it."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        out = []
        for i in range(len(column)):
            try:
                out.append(column.slice(i, 1).to_pylist()[0])
            except UnicodeDecodeError:
                out.append(_NOT_UTF8)
        return out


def _digests(table: pa.Table, id_column: str) -> list[tuple[object, bytes]]:
    """(id, content digest) of every row, in table order: one pass over the rows.

    A row's digest covers its values in column-name order, keyed by the column names (a renamed
    column changes every digest); the values are read a column at a time, not as a dict per row.
    """
    names = table.column_names
    order = sorted(range(len(names)), key=lambda i: names[i])
    key = hashlib.blake2b(repr([names[i] for i in order]).encode(), digest_size=32).digest()
    blake2b, at = hashlib.blake2b, names.index(id_column)
    out: list[tuple[object, bytes]] = []
    for batch in table.to_batches(max_chunksize=65536):
        columns = [_values(batch.column(i)) for i in order]
        digests = [blake2b(repr(values).encode(), digest_size=16, key=key).digest() for values in zip(*columns)]
        out.extend(zip(columns[order.index(at)], digests))
    return out


def _checksum(digests: list[tuple[object, bytes]]) -> str:
    return hashlib.blake2b(b"".join(sorted(d for _, d in digests)), digest_size=16).hexdigest()


def row_digests(table: pa.Table, id_column: str) -> tuple[Counter, dict]:
    """(count of each id, id -> content digest) for every row of `table`."""
    pairs = _digests(table, id_column)
    return Counter(key for key, _ in pairs), dict(pairs)


def content_checksum(table: pa.Table, id_column: str) -> str:
    """Order-independent checksum of a table's rows (XOR-free: sorted digests, hashed)."""
    return _checksum(_digests(table, id_column))


@dataclass
class CheckResult:
    rows_expected: int
    rows_read: int
    lost: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    checksum_expected: str = ""
    checksum_read: str = ""

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.duplicated and not self.unexpected and not self.changed
                and self.checksum_expected == self.checksum_read)

    def to_dict(self, limit: int = 20) -> dict:
        d = asdict(self)
        for key in ("lost", "duplicated", "unexpected", "changed"):
            d[f"rows_{key}"] = len(d[key])
            d[key] = d[key][:limit]
        d["ok"] = self.ok
        return d

    def __str__(self) -> str:
        return (f"rows expected {self.rows_expected}, read {self.rows_read}: lost {len(self.lost)}, duplicated "
                f"{len(self.duplicated)}, unexpected {len(self.unexpected)}, changed {len(self.changed)}, checksum "
                f"{'equal' if self.checksum_expected == self.checksum_read else 'DIFFERENT'}")


def check(expected: pa.Table, read: pa.Table, id_column: str = "id") -> CheckResult:
    """Compare what was acknowledged (`expected`) with what the consumer read."""
    exp_pairs, got_pairs = _digests(expected, id_column), _digests(read, id_column)  # each table read once
    exp_counts, exp_digest = Counter(k for k, _ in exp_pairs), dict(exp_pairs)
    got_counts, got_digest = Counter(k for k, _ in got_pairs), dict(got_pairs)
    result = CheckResult(rows_expected=expected.num_rows, rows_read=read.num_rows)
    result.lost = sorted(k for k in exp_counts if k not in got_counts)
    result.duplicated = sorted(k for k, n in got_counts.items() if n > 1)
    result.unexpected = sorted(k for k in got_counts if k not in exp_counts)
    result.changed = sorted(k for k in got_counts if k in exp_digest and got_digest[k] != exp_digest[k])
    result.checksum_expected = _checksum(exp_pairs)
    result.checksum_read = _checksum(got_pairs)
    return result


def read_all(ds) -> pa.Table:
    """Consume a ray.data.Dataset the way a trainer would (iter_batches) into one table."""
    tables = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
              for b in ds.iter_batches(batch_size=4096, batch_format="pyarrow")]
    if not tables:
        schema = ds.schema()
        return pa.Table.from_batches([], schema=getattr(schema, "base_schema", schema))
    return pa.concat_tables(tables)


def spark_to_arrow(df) -> pa.Table:
    """A Spark DataFrame as one Arrow table, on PySpark 4 (toArrow) and 3.5 (its private twin)."""
    if hasattr(df, "toArrow"):
        return df.toArrow()

    schema = pyspark_arrow_schema(df.schema)  # PySpark's own mapping, independent of ftbridge's
    batches = collect_arrow_batches(df)
    if not batches:
        return pa.Table.from_batches([], schema=schema)
    # As PySpark 4's toArrow does: Spark labels timestamps with the session time zone, the
    # Arrow schema of the DataFrame says UTC (same instants).
    return pa.Table.from_batches(batches).cast(schema)
