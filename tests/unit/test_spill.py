"""Spill files: paths, permissions, atomic writes, checksums, type mapping."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftbridge.convert.partition import PartitionRef, runs
from ftbridge.convert.read.files import load_checked
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.spill.write import write_messages
from ftbridge.errors import ConfigurationError, ConversionError, FtbridgeError, PartitionLostError


def write_partition(target, conversion_id, partition_id, node_id, schema, batches):
    """Spill pyarrow batches the way the Spark job spills Spark's batch messages."""
    messages = (batch.serialize() for batch in batches)
    return write_messages(target, conversion_id, partition_id, node_id, schema.serialize().to_pybytes(), messages)


@given(st.integers(0, 500), st.integers(-2, 600))
def test_runs_cut_a_range_into_contiguous_runs_of_about_equal_length(n, k):
    """How partitions are grouped into read tasks and a partition into blocks."""
    cut = runs(n, k)
    assert cut[0][0] == 0 and cut[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
    assert len(cut) == max(1, min(k, n))
    lengths = [b - a for a, b in cut]
    assert max(lengths) - min(lengths) <= 1 and (n == 0 or min(lengths) >= 1)


def test_resolve_targets(tmp_path):
    assert SpillTarget.resolve(None).node_local
    durable = SpillTarget.resolve(str(tmp_path))
    assert not durable.node_local and durable.root == str(tmp_path)
    assert SpillTarget.resolve(f"file://{tmp_path}").root == str(tmp_path)
    assert SpillTarget.resolve("s3://bucket/prefix/").root == "s3://bucket/prefix"


def test_paths_cannot_escape_the_root(tmp_path):
    target = SpillTarget(str(tmp_path), node_local=True)
    for bad in ("../../etc", "a/b", "", "x" * 100):
        with pytest.raises(ConfigurationError):
            target.partition_path(bad, 0, "node")
        with pytest.raises(ConfigurationError):
            target.partition_path("conv", 0, bad)
    assert target.partition_path("conv", 3, "node").endswith("/node/conv/part-00003.arrow")


def test_write_is_private_atomic_and_checked(tmp_path):
    target = SpillTarget(str(tmp_path / "spill"), node_local=True)
    target.check_writable()
    assert os.stat(target.root).st_mode & 0o777 == 0o700
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    batches = [pa.record_batch({"id": [1, 2], "s": ["a", "b"]}, schema=schema),
               pa.record_batch({"id": [3], "s": [None]}, schema=schema)]
    meta = write_partition(target, "conv", 0, "node", schema, iter(batches))
    assert meta["num_rows"] == 3 and os.path.getsize(meta["path"]) == meta["num_bytes"]
    assert os.stat(meta["path"]).st_mode & 0o777 == 0o600
    assert [p for p in os.listdir(os.path.dirname(meta["path"])) if ".tmp-" in p] == []
    ref = PartitionRef("conv", 0, meta["path"], "node", 3, meta["num_bytes"], meta["checksum"], target)
    table, problem, _ = load_checked(ref)
    assert problem is None and table.to_pylist() == [{"id": 1, "s": "a"}, {"id": 2, "s": "b"}, {"id": 3, "s": None}]
    with open(meta["path"], "r+b") as f:
        f.seek(meta["num_bytes"] // 2)
        f.write(b"\x00\xff")
    assert load_checked(ref)[1] == "checksum_mismatch"
    os.remove(meta["path"])
    assert load_checked(ref)[1] == "spill_missing"


def test_failed_write_leaves_no_file(tmp_path):
    target = SpillTarget(str(tmp_path), node_local=False)
    schema = pa.schema([("id", pa.int64())])

    def broken():
        yield pa.record_batch({"id": [1]}, schema=schema)
        raise RuntimeError("executor died")

    with pytest.raises(RuntimeError):
        write_partition(target, "conv", 1, None, schema, broken())
    assert os.listdir(tmp_path / "conv") == []


def test_empty_partition_has_the_schema(tmp_path):
    target = SpillTarget(str(tmp_path), node_local=False)
    schema = pa.schema([("id", pa.int64())])
    meta = write_partition(target, "conv", 0, None, schema, iter([]))
    ref = PartitionRef("conv", 0, meta["path"], None, 0, meta["num_bytes"], meta["checksum"], target)
    table, problem, _ = load_checked(ref)
    assert problem is None and table.num_rows == 0 and table.schema == schema


def test_spill_file_is_an_ipc_stream_and_hashes_its_bytes(tmp_path):
    from ftbridge.convert.spill.write import file_checksum

    target = SpillTarget(str(tmp_path), node_local=False)
    schema = pa.schema([("id", pa.int64()), ("xs", pa.list_(pa.int32()))])
    batches = [pa.record_batch({"id": [1, 2], "xs": [[1], None]}, schema=schema),
               pa.record_batch({"id": [], "xs": []}, schema=schema),  # empty batches are left out
               pa.record_batch({"id": [3], "xs": [[2, 3]]}, schema=schema)]
    meta = write_partition(target, "conv", 2, None, schema, iter(batches))
    with open(meta["path"], "rb") as f:
        assert pa.ipc.open_stream(f).read_all() == pa.Table.from_batches(batches)
    assert (meta["checksum"], meta["num_bytes"]) == file_checksum(pa.fs.LocalFileSystem(), meta["path"])
    assert meta["num_rows"] == 3


def test_bytes_that_are_not_a_batch_of_the_schema_are_refused(tmp_path):
    target = SpillTarget(str(tmp_path), node_local=False)
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(ConversionError, match="not an Arrow record batch"):
        write_messages(target, "conv", 0, None, schema.serialize().to_pybytes(), iter([b"\x00" * 64]))
    assert os.listdir(tmp_path / "conv") == []


def test_files_of_the_older_ipc_file_format_still_read(tmp_path):
    from ftbridge.convert.read.files import parse_ipc

    table = pa.table({"id": [1, 2, 3]})
    path = tmp_path / "old.arrow"
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)
    assert parse_ipc(pa.memory_map(str(path)).read_buffer()) == table


def test_unwritable_spill_dir(tmp_path):
    with pytest.raises(ConfigurationError, match="not writable"):
        SpillTarget("/proc/ftbridge-no", node_local=False).check_writable()


def test_errors_survive_pickling():
    import pickle

    err = PartitionLostError(conversion_id="c1", partition=4, node_id="n9", cause="disk gone")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, FtbridgeError) and back.partition == 4 and back.node_id == "n9"
    assert "c1" in str(back) and "ftbridge recover c1" in str(back) and not back.retryable


def test_spill_writer_jar_is_built_once_and_skipped_without_javac(tmp_path, monkeypatch):
    import zipfile

    from ftbridge.adapters.spark import spark_home
    from ftbridge.cluster import jars as spill_jvm
    from ftbridge.cluster.jvm import find_java

    monkeypatch.setenv("FTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    java = find_java()
    jar = spill_jvm.build_jar(java, spark_home())
    assert jar and zipfile.ZipFile(jar).namelist() == [
        "ftbridge/spill/SpillJob$Handed.class", "ftbridge/spill/SpillJob$Joined.class",
        "ftbridge/spill/SpillJob$Nothing.class", "ftbridge/spill/SpillJob.class", "ftbridge/spill/SpillWriter.class"]
    built = os.stat(jar).st_mtime_ns
    assert spill_jvm.build_jar(java, spark_home()) == jar and os.stat(jar).st_mtime_ns == built  # cached
    # A Java runtime without a compiler: no jar, so Python workers write the spill files.
    jre = tmp_path / "jre" / "bin"
    jre.mkdir(parents=True)
    (jre / "java").write_text("#!/bin/sh\nexit 0\n")
    (jre / "java").chmod(0o755)
    monkeypatch.setenv("PATH", str(jre))
    assert spill_jvm.build_jar(str(jre / "java"), spark_home()) is None


def test_redact_uri_drops_credentials_and_secret_query_parameters():
    from ftbridge.convert.spill.target import redact_uri

    uri = ("s3://AKIA123:s3cr3t/x@bucket/spill/?endpoint_override=10.0.0.1:9000&scheme=http&region=eu-west-1"
           "&secret_key=abc&sas_token=def&account_key=ghi")
    assert redact_uri(uri) == "s3://bucket/spill/?endpoint_override=10.0.0.1:9000&scheme=http&region=eu-west-1"
    assert redact_uri("/local/path") == "/local/path"
    assert redact_uri("gs://bucket/p") == "gs://bucket/p"
    assert redact_uri("hdfs://user:pw@namenode:8020/p?replication=2") == "hdfs://namenode:8020/p?replication=2"


def test_recorded_target_uses_this_process_credentials_for_a_redacted_root():
    target = SpillTarget.resolve("s3://KEY:SECRET@bucket/p?region=us-east-1")
    assert target.display_root == "s3://bucket/p?region=us-east-1"
    again = SpillTarget.recorded({"spill_root": target.display_root, "node_local": False})
    assert again.root == target.root
    other = SpillTarget.recorded({"spill_root": "s3://other/p", "node_local": False})
    assert other.root == "s3://other/p"


def test_read_tasks_yield_whole_record_batches_in_order_in_blocks_of_a_size():
    from ftbridge.convert.read.task import blocks_of

    def batch(i, n=1000):
        return pa.record_batch({"id": pa.array(range(i * n, (i + 1) * n), pa.int64())})  # 8 bytes a row

    big = pa.Table.from_batches([batch(i) for i in range(10)])  # one partition: 10 batches of 8,000 bytes
    blocks = list(blocks_of([big], max_bytes=20_000))
    assert [b.num_rows for b in blocks] == [2000] * 5  # split: two batches fit, a third would not
    assert pa.concat_tables(blocks).equals(big)
    assert [b.num_rows for b in blocks_of([big], max_bytes=1)] == [1000] * 10  # never splits a batch
    tiny = [pa.Table.from_batches([batch(i, 10)]) for i in range(100)]  # 100 partitions of 80 bytes
    joined = list(blocks_of(tiny, max_bytes=4_000))
    assert [b.num_rows for b in joined] == [500, 500]  # joined, in order
    assert pa.concat_tables(joined).equals(pa.concat_tables(tiny))
    empty = big.schema.empty_table()
    assert [b.num_rows for b in blocks_of([empty, empty], 4_000)] == [0]
    assert list(blocks_of([empty], 4_000))[0].schema == big.schema
    assert [b.num_rows for b in blocks_of([empty, tiny[0], empty], 4_000)] == [10]
    assert [b.num_rows for b in blocks_of([big, *tiny], None)] == [big.num_rows + 10 * len(tiny)]  # no limit


def test_served_table_is_the_checked_bytes_even_if_the_file_changes_after(tmp_path):
    # A read task checks a file, then hands its table to Ray: a file damaged in place in between
    # (or truncated: SIGBUS under a mapping) must not change or kill what was served.
    target = SpillTarget(str(tmp_path), node_local=False)
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    rows = {"id": list(range(1000)), "s": [f"value-{i}" for i in range(1000)]}
    meta = write_partition(target, "conv", 0, None, schema, iter([pa.record_batch(rows, schema=schema)]))
    ref = PartitionRef("conv", 0, meta["path"], None, 1000, meta["num_bytes"], meta["checksum"], target)
    table, problem, _ = load_checked(ref)
    assert problem is None
    with open(meta["path"], "r+b") as f:
        f.seek(meta["num_bytes"] - 200)
        f.write(b"\xff" * 64)  # inside the string data
        f.truncate(meta["num_bytes"] // 3)
    assert table.to_pydict() == rows
    assert load_checked(ref)[1] == "checksum_mismatch"


def test_files_of_an_unplaced_executor_go_to_the_ray_node_at_its_address():
    """A session ftbridge did not start sets no Ray node in its executors: the driver names the
    Ray node at the writing executor's address; on one machine with several nodes none (every
    node reads the same files; naming one would tie the files to it)."""
    from ftbridge.convert.spill.target import ray_nodes_by_address

    nodes = [{"NodeID": "a", "NodeManagerAddress": "10.0.0.1", "Alive": True},
             {"NodeID": "b", "NodeManagerAddress": "10.0.0.2", "Alive": True},
             {"NodeID": "c", "NodeManagerAddress": "10.0.0.2", "Alive": True},
             {"NodeID": "d", "NodeManagerAddress": "10.0.0.3", "Alive": False},
             {"NodeID": "e", "NodeManagerAddress": "10.0.0.3", "Alive": True}]
    # Several hosts: a host that runs two nodes (Ray on Spark restarted one there) names one.
    assert ray_nodes_by_address(nodes) == {"10.0.0.1": "a", "10.0.0.2": "b", "10.0.0.3": "e"}
    # One machine: its nodes share the address and its files; none is named.
    one = [{"NodeID": x, "NodeManagerAddress": "127.0.0.1", "Alive": True} for x in "fg"]
    assert ray_nodes_by_address(one) == {}
    assert ray_nodes_by_address(one[:1]) == {"127.0.0.1": "f"}


def test_spark_retries_of_the_spill_job_become_events_naming_partition_executor_and_reason(monkeypatch):
    """Attempts of the spill stage name their partition; a plan stage's attempt and a stage run
    again have none (its task index is not a partition)."""
    from ftbridge.adapters import spark as spark_adapter
    from ftbridge.convert.spill import job

    attempts = [{"stage": 4, "stage_attempt": 0, "index": 2, "final_stage": True, "executor": "1",
                 "host": "10.0.0.1", "reason": "ExecutorLostFailure (executor 1 exited)"},
                {"stage": 3, "stage_attempt": 0, "index": 7, "final_stage": False, "executor": "0",
                 "host": "10.0.0.2", "reason": "FetchFailed"},
                {"stage": 3, "stage_attempt": 1, "index": None, "final_stage": False, "executor": None,
                 "host": None, "reason": "the stage ran again (its earlier output was lost)"}]
    monkeypatch.setattr(spark_adapter, "failed_task_attempts", lambda sc, group: attempts)
    events = job.retried_events(None, "g", "c1", 100.0)
    assert [(e.kind, e.partition_id) for e in events] == [("spill_retried", 2), ("spill_retried", None),
                                                           ("spill_retried", None)]
    assert events[0].detail == ("stage 4 attempt 0: task 2 failed on executor 1 (10.0.0.1): "
                                "ExecutorLostFailure (executor 1 exited); Spark ran it again")
    assert events[2].detail == "stage 3 attempt 1: the stage ran again (its earlier output was lost)"


def test_release_on_a_host_deletes_the_unfinished_files_a_killed_writer_left(tmp_path):
    """An executor killed mid-file leaves `part-NNNNN.arrow.tmp-<hex>` (no catalog row names it):
    deleting the conversion's recorded files on that host takes those too, in any node folder,
    and nothing that is not an unfinished file of that conversion."""
    from ftbridge.convert.spill.cleanup import delete_local

    cid, other = "a" * 32, "b" * 32
    recorded = tmp_path / "node-1" / cid / "part-00000.arrow"
    partial = tmp_path / "unknown-node" / cid / f"part-00003.arrow.tmp-{'c' * 32}"
    kept = [tmp_path / "node-1" / other / f"part-00003.arrow.tmp-{'d' * 32}",  # another conversion's
            tmp_path / "node-2" / cid / "notes.txt"]                             # not a file of ours
    for path in [recorded, partial, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    assert delete_local(str(tmp_path), cid, [str(recorded)]) == [10]
    assert not recorded.exists() and not partial.exists()
    assert not (tmp_path / "unknown-node").exists()  # its folders, empty now, went too
    assert all(p.exists() for p in kept)


def test_a_released_conversion_leaves_no_file_on_a_host_even_one_no_row_names(tmp_path):
    """A file an executor finished just before its host was cut off (Spark ran the task again
    elsewhere, so no row names it) goes when the whole conversion is released: `delete_rest`
    deletes every file of that conversion on the host, finished or not, and sizes them; nothing of
    another conversion, nothing that is not a spill file. A dry run only sizes them."""
    from ftbridge.convert.spill.cleanup import delete_rest

    cid, other = "e" * 32, "f" * 32
    mine = [tmp_path / "node-old" / cid / "part-00003.arrow", tmp_path / "node-new" / cid / "part-00001.arrow",
            tmp_path / "node-new" / cid / f"part-00002.arrow.tmp-{'a' * 32}"]
    kept = [tmp_path / "node-old" / other / "part-00003.arrow", tmp_path / "node-old" / cid / "notes.txt"]
    for i, path in enumerate([*mine, *kept]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))
    want = sorted((str(p), i + 1) for i, p in enumerate(mine))
    assert sorted(delete_rest(str(tmp_path), cid, dry_run=True)) == want
    assert all(p.exists() for p in mine)
    named = str(mine[0])  # deleted (or sized) by name just before: not counted twice
    assert sorted(delete_rest(str(tmp_path), cid, dry_run=True, done=[named])) == [w for w in want if w[0] != named]
    assert sorted(delete_rest(str(tmp_path), cid)) == want
    assert not any(p.exists() for p in mine) and all(p.exists() for p in kept)
    assert not (tmp_path / "node-new").exists()  # its folders, empty now, went too
    assert delete_rest(str(tmp_path), "../" + cid) == [] and delete_rest(str(tmp_path / "none"), cid) == []
