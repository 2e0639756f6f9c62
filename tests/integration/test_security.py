"""Spark on Ray admits only its own driver: Spark RPC is authenticated with the session's own
secret, which no command line, log, catalog or error holds; the daemons' web UIs listen on
loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from pyspark import StorageLevel

import ftbridge
from ftbridge.chaos.proctable import descendants, listening, wait_gone
from ftbridge.cluster import session
from ftbridge.cluster.auth import SECRET_CONF, UI_HOST
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from tests.conftest import python_env

# A plain PySpark driver that knows the master's URL; ROGUE_SECRET, when set, is the secret it offers.
ROGUE = r"""
import os, sys, time
from pyspark.sql import SparkSession
builder = SparkSession.builder.master(sys.argv[1]).appName(sys.argv[2]).config("spark.ui.enabled", "false")
if "ROGUE_SECRET" in os.environ:
    builder = builder.config("spark.authenticate", "true").config("spark.authenticate.secret", os.environ["ROGUE_SECRET"])
builder.getOrCreate()
print("SparkContext up", flush=True)
time.sleep(600)
"""

REFUSED = "Failed to connect to master"  # StandaloneAppClient's warning when the master will not talk


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _start_driver(name: str, master_url: str, log_dir, secret: str | None) -> tuple[subprocess.Popen, str]:
    env = python_env()
    env.pop("ROGUE_SECRET", None)
    if secret is not None:
        env["ROGUE_SECRET"] = secret
    # Killed with SIGKILL below: its temp files (spark-*, blockmgr-*, native libraries) go in a
    # folder of the test's, which the test removes, not in /tmp.
    tmp = log_dir / f"{name}-tmp"
    tmp.mkdir()
    env.update(TMPDIR=str(tmp), SPARK_LOCAL_DIRS=str(tmp),
               JAVA_TOOL_OPTIONS=f"{env.get('JAVA_TOOL_OPTIONS', '')} -Djava.io.tmpdir={tmp} -XX:-UsePerfData".strip())
    log_path = str(log_dir / f"{name}.log")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", ROGUE, master_url, name], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log_path


def _end(procs) -> None:
    tree = set()
    for proc in procs:
        tree |= set(descendants(proc.pid)) | {proc.pid}
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in procs:
        proc.wait(timeout=30)
    assert not wait_gone(tree, timeout_s=30)


def _spark_temp_files() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(("spark-", "blockmgr-", "liblz4-java"))}


@pytest.mark.core  # Spark's messages and handlers differ between releases
def test_drivers_without_the_secret_are_refused_and_one_with_it_registers(spark, tmp_path):
    current = session.current()
    master_log = current.master_info["log_path"]
    secret = current.cfg.auth_secret
    assert spark.sparkContext.getConf().get(SECRET_CONF) == secret and len(secret) >= 32
    drivers = {"rogue-none": None, "rogue-wrong": "not-" + secret[4:], "friend": secret}
    litter_before = _spark_temp_files()
    started = {name: _start_driver(name, current.master_url, tmp_path, s) for name, s in drivers.items()}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            refused = [n for n in ("rogue-none", "rogue-wrong") if REFUSED in _read(started[n][1])]
            if len(refused) == 2 and "Registered app friend" in _read(master_log):
                break
            for name, (proc, log_path) in started.items():
                assert proc.poll() is None, f"{name} ended early:\n{_read(log_path)[-3000:]}"
            time.sleep(0.5)
        else:
            raise AssertionError("within 120s not both rogues were refused and the friend registered:\n"
                                 + "\n".join(f"--- {n}\n{_read(p)[-1500:]}" for n, (_, p) in started.items()))
        log = _read(master_log)
        # The rogues reached the master and were turned away: no application of theirs exists.
        assert "Registering app rogue" not in log and "Registered app rogue" not in log, log[-3000:]
        assert "SparkContext up" not in _read(started["rogue-none"][1])
    finally:
        _end([proc for proc, _ in started.values()])
        for name in drivers:
            shutil.rmtree(tmp_path / f"{name}-tmp", ignore_errors=True)
    assert _spark_temp_files() == litter_before
    # The session's own work goes on.
    assert spark.range(0, 1000, numPartitions=4).count() == 1000


def test_the_shared_session_encrypts_on_every_side(spark):
    """The suite's shared session runs with encrypt=True: the driver, the master, the workers and
    the executors (their worker passes Spark's network settings on) all have RPC encryption on."""
    from ftbridge.cluster.jvm import cmdline

    current = session.current()
    assert current.cfg.encrypt and spark.sparkContext.getConf().get("spark.network.crypto.enabled") == "true"
    pids = [current.master_info["jvm_pid"]] + [p for i in ftbridge.executors() for p in (i.worker_jvm_pid, i.jvm_pid)]
    assert len(pids) == 5
    for pid in pids:
        args = cmdline(pid)
        assert "-Dspark.network.crypto.enabled=true" in args and "-Dspark.authenticate=true" in args, args


def test_daemon_web_uis_listen_on_loopback_only(spark):
    current = session.current()
    host = current.master_url.removeprefix("spark://").rsplit(":", 1)[0]
    daemons = {"master": current.master_info["jvm_pid"]}
    daemons.update({f"worker {i.actor_name}": i.worker_jvm_pid for i in ftbridge.executors()})
    assert len(daemons) == 3
    for role, pid in daemons.items():
        sockets = listening(pid)
        ui = {s for s in sockets if s.startswith(UI_HOST + ":")}
        rpc = {s for s in sockets if s.startswith(host + ":")}
        assert len(ui) == 1 and len(rpc) == 1, (role, sockets)  # one web UI, one RPC port
        assert sockets == ui | rpc, (role, sockets)            # nothing on every address
    assert f"{host}:{current.master_url.rsplit(':', 1)[1]}" in listening(daemons["master"])


def test_the_secret_is_in_no_command_line_log_catalog_or_error(spark, tmp_path):
    current = session.current()
    secret = current.cfg.auth_secret
    catalog = str(tmp_path / "catalog.duckdb")
    df = spark.range(0, 20_000, numPartitions=4).selectExpr("id", "concat('v-', cast(id as string)) as s")
    ds = ftbridge.from_spark_recoverable(df, StorageLevel.NONE, catalog=catalog)
    result = check(spark_to_arrow(df), read_all(ds))
    assert result.ok, str(result)
    ftbridge.release(ds, catalog=catalog)
    needle = secret.encode()
    # Every process's command line (world-readable); environments only where their owner alone reads them.
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                assert needle not in f.read(), f"the secret is in the command line of pid {entry}"
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    holders.append(int(entry))
                    assert os.stat(f"/proc/{entry}/environ").st_mode & 0o077 == 0
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    # The master, worker and executor JVMs hold it (it is how they authenticate); they are the proof it reached them.
    jvms = {current.master_info["jvm_pid"]} | {p for i in ftbridge.executors() for p in (i.worker_jvm_pid, i.jvm_pid)}
    assert jvms <= set(holders), (jvms, holders)
    # The catalog, and every file under the session's scratch folder (logs, Spark work dirs).
    with open(catalog, "rb") as f:
        assert needle not in f.read()
    from ftbridge.cluster import scratch

    searched = 0
    for root in {scratch.root(), scratch.log_dir()}:
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        assert needle not in f.read(), os.path.join(folder, name)
                    searched += 1
                except OSError:  # a file that went while the walk ran
                    continue
    assert searched > 0


def _rpc_request(sock, request_id: int, body: bytes) -> tuple[int, bytes]:
    """One request in Spark's transport framing (frame length incl. itself, type 3 = RpcRequest,
    request id, body size, body); returns the reply's (type, rest): 4 = RpcResponse, 5 = RpcFailure."""
    import struct

    message = struct.pack(">bqi", 3, request_id, len(body)) + body
    sock.sendall(struct.pack(">q", 8 + len(message)) + message)
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            raise ConnectionError("closed before a reply")
        head += chunk
    length, kind = struct.unpack(">qb", head)
    rest = b""
    while len(rest) < length - 9:
        chunk = sock.recv(length - 9 - len(rest))
        if not chunk:
            break
        rest += chunk
    return kind, rest


@pytest.mark.core  # Spark's messages and handlers differ between releases
def test_block_managers_answer_nothing_but_the_handshake(spark):
    """A client that skips the authentication handshake gets only the handshake's refusal from
    every block manager (the executors' and the driver's): Spark's authentication handler takes
    the request. (Without authentication the same request goes to the block service, which drops
    the connection: this test then fails.)"""
    import socket

    from ftbridge.adapters.spark import block_manager_addresses

    deadline = time.monotonic() + 60  # an executor's block manager registers just after the executor
    while len(addresses := block_manager_addresses(spark.sparkContext)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(addresses) == 3, addresses  # two executors and the driver
    for address in addresses:
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.settimeout(30)
            kind, rest = _rpc_request(sock, 7, b"\x00ftbridge-probe")  # 0 would be OpenBlocks
            assert kind == 5, (address, kind, rest[:200])  # an RpcFailure, not a response
            error = rest[12:].decode(errors="replace")    # request id, string length, the error
            # Spark's authentication handler took the request (and found no handshake in it).
            assert "doAuthChallenge" in error, (address, error[:500])
