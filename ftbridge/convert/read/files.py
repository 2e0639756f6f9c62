"""One spill file in a read task: read into memory once, checked, parsed zero-copy over that copy."""

from __future__ import annotations

import pyarrow as pa

from ftbridge.common.retry import is_missing_file, remote_io_retry
from ftbridge.convert.partition import PartitionRef
from ftbridge.convert.read.arrow_repair import well_formed
from ftbridge.convert.spill.write import buffer_checksum
from ftbridge.lineage.kinds import EventKind


def _read_whole(fs, path: str, remote: bool) -> pa.Buffer:
    """The whole file, read into memory once; from a remote store with bounded retries for
    transient network errors.

    Not memory-mapped: the bytes that are checked must be the bytes that are served. A mapped
    file changed in place after its check (a disk fault, another process) would change the
    table the read task hands to Ray, and one truncated under the mapping kills the reader with
    SIGBUS; a copy is immune to both and costs one memory copy of the file.
    """
    def read():
        with fs.open_input_stream(path) as stream:
            return stream.read_buffer()

    return remote_io_retry(read) if remote else read()


def load_checked(ref: PartitionRef) -> tuple[pa.Table | None, EventKind | None, str]:
    """(table, None, '') when the file is intact; (None, kind, why) when missing or corrupt.

    Local files are read into memory, remote ones fetched once (with bounded retries for
    transient network errors); the checksum is taken over those bytes and the table parsed
    from them zero-copy, so what was checked is what is served.
    """
    fs, _ = ref.target.filesystem()
    try:
        buf = _read_whole(fs, ref.path, remote=not ref.target.is_local)
        size, checksum = buf.size, buffer_checksum(buf, ref.checksum)
    except FileNotFoundError:
        return None, EventKind.SPILL_MISSING, f"{ref.path} does not exist"
    except (OSError, pa.ArrowException) as exc:
        if is_missing_file(exc):
            return None, EventKind.SPILL_MISSING, f"{ref.path}: {exc}"
        return None, EventKind.SPILL_MISSING, f"{ref.path} could not be read: {exc}"
    if size != ref.num_bytes or checksum != ref.checksum:
        return None, EventKind.CHECKSUM_MISMATCH, (f"{ref.path}: {size} bytes, checksum {checksum}; catalog says "
                                           f"{ref.num_bytes} bytes, {ref.checksum}")
    try:
        table = well_formed(parse_ipc(buf))
    except (OSError, pa.ArrowException) as exc:
        return None, EventKind.CHECKSUM_MISMATCH, f"{ref.path} is not a readable Arrow IPC file: {exc}"
    if table.num_rows != ref.num_rows:
        return None, EventKind.CHECKSUM_MISMATCH, f"{ref.path} has {table.num_rows} rows; catalog says {ref.num_rows}"
    return table, None, ""


def parse_ipc(buf: pa.Buffer) -> pa.Table:
    """A spill file's table, zero-copy over the buffer: an IPC stream (what ftbridge writes),
    or an IPC file (what ftbridge before the `arrow-ipc-stream/1` format wrote)."""
    if buf.size >= 6 and buf[:6].to_pybytes() == b"ARROW1":
        return pa.ipc.open_file(buf).read_all()
    return pa.ipc.open_stream(buf).read_all()
