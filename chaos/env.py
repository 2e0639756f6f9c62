"""The chaos cluster: a local multi-node Ray cluster with Spark executors on worker nodes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any

import ray
from ray.cluster_utils import Cluster

import ftbridge
from ftbridge.adapters.ray import head_node_args
from ftbridge.cluster import session
from ftbridge.common.errors import FtbridgeError
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import ConversionStatus

log = logging.getLogger(__name__)

NODE_RESOURCE = "chaos_node"
TRAIN_RESOURCE = "train_slot"  # one Ray Train worker per node (no CPU: the node's CPU is its executor's)
SPARK_CONF = {
    # Short enough that a paused executor is declared lost within a scenario's bound.
    "spark.network.timeout": "12s",
    "spark.network.timeoutInterval": "4s",
    "spark.executor.heartbeatInterval": "2s",
}


class ChaosEnv:
    """Owns worker nodes and the Spark session the scenarios use; replaces removed nodes."""

    def __init__(self, cluster, workdir: str | None = None, nodes: int = 3) -> None:
        self.cluster = cluster
        self.owns_workdir = workdir is None  # a temp dir we made is ours to remove; a given one is kept
        self.workdir = workdir or tempfile.mkdtemp(prefix="ftbridge-chaos-")
        self.catalog = os.path.join(self.workdir, "catalog.duckdb")
        self.nodes: list = []  # the Cluster's worker nodes
        for _ in range(nodes):
            self.add_node()
        cluster.wait_for_nodes()
        self.spark: Any = None  # the SparkSession, once started

    @property
    def spill_root(self) -> str:
        return SpillTarget.resolve(None).root

    def add_node(self):
        node = self.cluster.add_node(num_cpus=1, resources={NODE_RESOURCE: 1, TRAIN_RESOURCE: 1},
                                     object_store_memory=300 << 20)
        self.nodes.append(node)
        return node

    def node(self, node_id: str):
        return next(n for n in self.nodes if n.node_id == node_id)

    def remove(self, node) -> None:
        """Forget a removed node; `replenish()` (main thread) replaces it after the scenario."""
        if node in self.nodes:
            self.nodes.remove(node)

    def replenish(self, want: int = 3) -> None:
        """Add nodes back up to `want`, as an autoscaler would. Ray's add_node needs the main thread."""
        while len(self.nodes) < want:
            self.add_node()
        self.cluster.wait_for_nodes()

    def ensure_spark(self, configs: dict | None = None):
        """The running session, or a new one (with extra Spark `configs`, e.g. proxied driver ports)."""

        if session.current_or_none() is None:
            self.spark = ftbridge.init_spark("chaos", num_executors=2, executor_cores=1, executor_memory="768MB",
                                             executor_resources={NODE_RESOURCE: 1},
                                             configs={**SPARK_CONF, **(configs or {})})
            self.spark.sparkContext.setLogLevel("ERROR")
        return self.spark

    def close(self) -> None:
        ftbridge.stop_spark(cleanup_data=True)
        self.release_all()
        for node in list(self.nodes):
            if node in self.cluster.worker_nodes:
                self.cluster.remove_node(node)
        self.nodes.clear()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


    def release_all(self) -> None:
        """Release what the run recorded and nobody released (e.g. conversions of a killed driver),
        so a run leaves no spill files behind."""
        if not os.path.exists(self.catalog):
            return
        with Catalog(self.catalog).read() as con:
            left = [c["conversion_id"] for c in queries.conversions(con) if c["status"] != ConversionStatus.RELEASED]
        for cid in left:
            try:
                ftbridge.release(cid, catalog=self.catalog)
            except FtbridgeError as exc:
                log.warning("could not release conversion %s: %s", cid, exc)


def start_cluster():
    """A fresh local cluster for `python -m ftbridge.chaos run`: a head node the driver uses."""

    cluster = Cluster(initialize_head=True, head_node_args=head_node_args(num_cpus=2, include_dashboard=False))
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    time.sleep(0.5)
    return cluster
