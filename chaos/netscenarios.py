"""Scenarios with network faults, through Toxiproxy (real, or ftbridge.chaos.toxiproxy_server).

Link 1, executors <-> the Spark driver: the driver binds 127.0.0.2 and advertises
127.0.0.1 on the same ports, where proxies forward to it, so every executor-to-driver
connection (RPC and block manager) crosses a proxy.

Link 2, read tasks <-> a durable spill store: an S3-compatible server (moto) behind a
proxy holds the spill files (`spill_dir="s3://…"`).
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import threading
import time

import pyarrow.fs as pafs

import ftbridge
from ftbridge.chaos import faults
from ftbridge.chaos.netfaults import NetFaults
from ftbridge.chaos.scenarios import BackgroundConversion, Outcome, frame, partitions_and_events, record_check
from ftbridge.cluster.net import free_port
from ftbridge.convert.ops.rowcheck import read_all, spark_to_arrow

BIND, ADVERTISE = "127.0.0.2", "127.0.0.1"


@contextlib.contextmanager
def proxied_driver(env, net: NetFaults):
    """A Spark session whose executors reach the driver only through two proxies."""

    ftbridge.stop_spark(cleanup_data=False)
    rpc, blocks = free_port(BIND), free_port(BIND)
    proxies = [net.proxy(f"driver-{name}", f"{BIND}:{port}", listen=f"{ADVERTISE}:{port}")
               for name, port in (("rpc", rpc), ("blocks", blocks))]
    try:
        spark = env.ensure_spark(configs={
            "spark.driver.bindAddress": BIND, "spark.driver.host": ADVERTISE,
            "spark.driver.port": str(rpc), "spark.driver.blockManager.port": str(blocks)})
        yield spark, proxies
    finally:
        ftbridge.stop_spark(cleanup_data=False)  # the next scenario gets a plain session


def net_driver_link_faults(env, seed, out: Outcome):
    """Latency on every executor-driver connection, then resets while Spark spills and rebuilds."""

    rng = random.Random(seed)
    with NetFaults() as net, proxied_driver(env, net) as (spark, proxies):
        rpc = proxies[0]
        for proxy in proxies:
            proxy.add_toxic(type="latency", attributes={"latency": 20, "jitter": 10})
        out.log.add("net_latency", "executors<->driver", latency_ms=20, jitter_ms=10)
        df = frame(spark, seed)
        reference = spark_to_arrow(df)
        job = BackgroundConversion(df, env.catalog, "net-driver")
        time.sleep(rng.uniform(0.5, 2.0))
        rpc.add_toxic(type="reset_peer", attributes={"timeout": 200}, stream="upstream", name="reset")
        out.log.add("net_reset_peer", "executors->driver rpc", after_ms=200)
        time.sleep(1.0)
        rpc.destroy_toxic("reset")
        ds = job.result(timeout_s=300)
        record_check(out, reference, read_all(ds), job.started)
        # Bandwidth-limited link while Spark rebuilds deleted files through it.
        for proxy in proxies:
            proxy.add_toxic(type="bandwidth", attributes={"rate": 2048}, name="bw")
        out.log.add("net_bandwidth", "executors<->driver", rate_kb_s=2048)
        cid = ftbridge.conversion_id(ds)
        parts, _ = partitions_and_events(env, cid)
        for part in rng.sample(parts, 2):
            faults.corrupt_spill(part["path"], "delete", rng, out.log)
        started = time.monotonic()
        record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)


@contextlib.contextmanager
def s3_store(net: NetFaults, bucket: str = "ftbridge-chaos"):
    """A moto S3 server on loopback behind a proxy; yields (spill_uri, proxy)."""
    port = free_port("127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the S3 test server did not start") from None
                time.sleep(0.1)
        proxy = net.proxy("s3", f"127.0.0.1:{port}")
        uri = (f"s3://testing:testing@{bucket}/spill?endpoint_override={proxy.listen}&scheme=http"
               "&region=us-east-1&allow_bucket_creation=true")

        fs, path = pafs.FileSystem.from_uri(uri)
        fs.create_dir(bucket)
        yield uri, proxy
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def net_spill_store_faults(env, seed, out: Outcome):
    """Durable spill on S3: latency, a dropped link and reset connections while reads run."""

    rng = random.Random(seed)
    with NetFaults() as net, s3_store(net) as (uri, proxy):
        spark = env.ensure_spark()
        df = frame(spark, seed)
        reference = spark_to_arrow(df)
        ds = ftbridge.from_spark_recoverable(df, spill_dir=uri, catalog=env.catalog, name="net-s3")
        cid = ftbridge.conversion_id(ds)
        proxy.add_toxic(type="latency", attributes={"latency": 30, "jitter": 10})
        out.log.add("net_latency", "reads<->spill store", latency_ms=30)
        started = time.monotonic()
        record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
        # The store goes away for a few seconds while a new driver-side read starts.
        down_s = rng.uniform(2.0, 5.0)

        def outage():
            with proxy.down():
                out.log.add("net_down", "reads<->spill store", seconds=round(down_s, 2))
                time.sleep(down_s)

        blip = threading.Thread(target=outage)
        blip.start()
        time.sleep(0.2)
        started = time.monotonic()
        record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
        blip.join(timeout=60)
        proxy.add_toxic(type="reset_peer", attributes={"timeout": 50}, toxicity=0.5, name="flaky")
        out.log.add("net_reset_peer", "reads<->spill store", toxicity=0.5)
        started = time.monotonic()
        record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
        proxy.destroy_toxic("flaky")
        ftbridge.release(cid, catalog=env.catalog)


NET_SCENARIOS = {
    "net_driver_link_faults": net_driver_link_faults,
    "net_spill_store_faults": net_spill_store_faults,
}
