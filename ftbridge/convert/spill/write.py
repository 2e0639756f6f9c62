"""Spill: Spark partitions to Arrow IPC files, one vectorised Spark job.

The function built by `make_spill_fn` runs inside Spark's Python workers over the Arrow
record-batch messages Spark's JVM made (see `batches.py`): it streams them, behind the schema
message, into a private temp file as an Arrow IPC stream, hashes the bytes as they go, renames
the file into place (atomic, so a killed task never leaves a torn file under the final name),
and yields one metadata row. Spill files hold Arrow IPC only: nothing is unpickled from disk.
"""

from __future__ import annotations

import errno
import os
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import xxhash

from ftbridge.common import foreign
from ftbridge.common.config import executor_node_id
from ftbridge.common.errors import ConversionError
from ftbridge.convert.spill.target import SpillTarget

CHUNK = 8 << 20
XXH64 = "xxh64:"  # checksums of the Arrow-stream spill files (the JVM writer computes the same one)


def _digest_like(recorded: str | None):
    """The hash a recorded checksum was made with: "xxh64:<hex>", or bare xxh3-128 hex (older files)."""
    if recorded is None or recorded.startswith(XXH64):
        return xxhash.xxh64(), XXH64
    return xxhash.xxh3_128(), ""


def file_checksum(fs: pafs.FileSystem, path: str, recorded: str | None = None) -> tuple[str, int]:
    """(checksum of the file's bytes, in the form of `recorded`, and size). xxh64 runs at
    ~10 GB/s here, so every read can afford to re-check its file."""
    digest, prefix = _digest_like(recorded)
    size = 0
    with fs.open_input_stream(path) as stream:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return prefix + digest.hexdigest(), size


def buffer_checksum(buf, recorded: str | None = None) -> str:
    digest, prefix = _digest_like(recorded)
    digest.update(memoryview(buf))
    return prefix + digest.hexdigest()


def _make_dir(fs: pafs.FileSystem, path: str, local: bool) -> None:
    if local:
        os.makedirs(path, mode=0o700, exist_ok=True)
    else:
        fs.create_dir(path, recursive=True)


EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC end-of-stream marker


def write_messages(target: SpillTarget, conversion_id: str, partition_id: int, node_id: str | None,
                   schema_message: bytes, messages) -> dict:
    """Write one Arrow IPC stream file (schema message, record-batch messages, end marker).

    Each message is parsed (zero-copy) against the schema before it is written, which counts
    the rows and refuses bytes that are not a record batch of this schema. The checksum is
    taken over the bytes as they are written. Returns the partition's metadata row.
    """
    schema = pa.ipc.read_schema(pa.py_buffer(schema_message))
    fs, _ = target.filesystem()
    final = target.partition_path(conversion_id, partition_id, node_id)
    _make_dir(fs, final.rsplit("/", 1)[0], target.is_local)
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    if target.is_local:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private before any byte lands
    rows = 0
    try:
        with fs.open_output_stream(tmp) as sink:
            out = _HashingSink(sink)
            out.write(schema_message)
            for message in messages:
                num_rows = _rows_of(message, schema, conversion_id, partition_id)
                if num_rows:
                    out.write(message)
                    rows += num_rows
            out.write(EOS)
        fs.move(tmp, final)
    except BaseException as exc:
        try:
            fs.delete_file(tmp)
        except (OSError, pa.ArrowException):
            pass
        if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left on device" in str(exc)):
            mark = foreign.DISK_FULL_MARK.format(node=node_id, root=target.display_root)
            raise OSError(errno.ENOSPC, f"{mark}: no space left on device writing partition {partition_id}") from exc
        raise
    return {"partition_id": int(partition_id), "path": final, "node_id": node_id, "num_rows": rows,
            "num_bytes": out.size, "checksum": XXH64 + out.digest.hexdigest()}


def _rows_of(message, schema: pa.Schema, conversion_id: str, partition_id: int) -> int:
    try:
        return pa.ipc.read_record_batch(pa.py_buffer(message), schema).num_rows
    except (pa.ArrowException, EOFError, ValueError) as exc:
        raise ConversionError(
            f"partition {partition_id}: Spark produced {len(message)} bytes that are not an Arrow record batch "
            f"of {schema.names} ({exc}); nothing was written. This is a bug in ftbridge or a Spark/pyarrow "
            "version mismatch: report it with `pip show pyspark pyarrow`.",
            conversion_id=conversion_id, partition=partition_id) from exc


class _HashingSink:
    """Writes through to a stream, hashing and counting the bytes."""

    def __init__(self, sink) -> None:
        self.sink, self.digest, self.size = sink, xxhash.xxh64(), 0

    def write(self, chunk) -> None:
        self.sink.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)


def make_spill_fn(target: SpillTarget, conversion_id: str, schema_message: bytes,
                  only_partition: int | None = None):
    """The `mapPartitionsWithIndex` function over Arrow batch bytes: spill, yield one metadata dict."""

    def spill(partition_id, messages):
        if only_partition is not None and partition_id != only_partition:
            for _ in messages:  # drain: Spark expects the input consumed
                pass
            return
        node_id = executor_node_id()
        yield write_messages(target, conversion_id, partition_id, node_id, schema_message, messages)

    return spill
