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


def _row_digest(row: dict) -> bytes:
    return hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=16).digest()


def row_digests(table: pa.Table, id_column: str) -> tuple[Counter, dict]:
    """(count of each id, id -> content digest) for every row of `table`."""
    counts: Counter = Counter()
    digests: dict = {}
    for batch in table.to_batches(max_chunksize=65536):
        for row in batch.to_pylist():
            key = row[id_column]
            counts[key] += 1
            digests[key] = _row_digest(row)
    return counts, digests


def content_checksum(table: pa.Table, id_column: str) -> str:
    """Order-independent checksum of a table's rows (XOR-free: sorted digests, hashed)."""
    digests = []
    for batch in table.to_batches(max_chunksize=65536):
        digests.extend(_row_digest(row) for row in batch.to_pylist())
    digests.sort()
    return hashlib.blake2b(b"".join(digests), digest_size=16).hexdigest()


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
    exp_counts, exp_digest = row_digests(expected, id_column)
    got_counts, got_digest = row_digests(read, id_column)
    result = CheckResult(rows_expected=expected.num_rows, rows_read=read.num_rows)
    result.lost = sorted(k for k in exp_counts if k not in got_counts)
    result.duplicated = sorted(k for k, n in got_counts.items() if n > 1)
    result.unexpected = sorted(k for k in got_counts if k not in exp_counts)
    result.changed = sorted(k for k in got_counts if k in exp_digest and got_digest[k] != exp_digest[k])
    result.checksum_expected = content_checksum(expected, id_column)
    result.checksum_read = content_checksum(read, id_column)
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