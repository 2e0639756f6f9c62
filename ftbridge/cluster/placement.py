"""Can Ray place the executors? Checked before any JVM starts, so a bad request fails at once."""

from __future__ import annotations

import logging

import ray

from ftbridge.cluster.config import ClusterConfig
from ftbridge.common.errors import ConfigurationError, InsufficientResourcesError

log = logging.getLogger(__name__)


def _fmt(demand: dict[str, float]) -> str:
    return ", ".join(f"{v / 2**30:.2f} GiB {k}" if k == "memory" else f"{v:g} {k}" for k, v in demand.items())


def check_resources(cfg: ClusterConfig) -> None:
    """Fail at once when Ray cannot place the executors (totals, and one executor on one node)."""
    demand = cfg.actor_demand()
    if cfg.placement_group is not None:
        _check_bundles(cfg, demand)
        return
    total = ray.cluster_resources()
    for res, amount in demand.items():
        want, have = cfg.num_executors * amount, total.get(res, 0.0)
        if want <= have + 1e-9:
            continue
        if res == "CPU":
            msg = (f"{cfg.num_executors} executors x {cfg.executor_cpus:g} CPUs need {want:g} CPUs but the Ray "
                   f"cluster has {have:g}. Ask for fewer executors or CPUs (executor_cpus= may be a fraction: "
                   "Spark still runs executor_cores tasks in each), or add Ray nodes.")
        elif res == "memory":
            msg = (f"{cfg.num_executors} executors x {cfg.executor_memory} (+overhead: "
                   f"{cfg.actor_memory_bytes / 2**30:.2f} GiB each) need {want / 2**30:.2f} GiB of Ray memory but "
                   f"the cluster has {have / 2**30:.2f} GiB. Lower executor_memory or add Ray nodes.")
        else:
            msg = f"{cfg.num_executors} executors x {amount:g} {res!r} exceed the cluster's {have:g}."
        raise InsufficientResourcesError(msg, resource=res, wanted=want, cluster=have)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(node.get(r, 0.0) + 1e-9 >= a for r, a in demand.items()) for node in nodes):
        raise InsufficientResourcesError(
            f"no single Ray node can hold one executor actor ({_fmt(demand)}); the cluster's totals would, but "
            "an actor lives on one node. Ask for smaller executors or add bigger nodes.", resource="node")
    if cfg.num_executors * (cfg.executor_cpus or 0.0) >= total.get("CPU", 0.0):
        # ftbridge's own tasks ask for no CPU, so conversions still run; user transforms that
        # ask for CPUs (map_batches, Train workers) will wait until executors are stopped.
        log.warning(
            "executors take all %g Ray CPUs: ftbridge conversions still run (their tasks ask for "
            "no CPU), but Ray work that needs CPUs waits until stop_spark(). Leave at least one "
            "CPU free for Ray Data transforms and training.", total.get("CPU", 0.0))


def bundle_demand(demand: dict[str, float], bundle: dict[str, float]) -> dict[str, float]:
    """An executor's demand inside a caller's bundle: Ray memory only if the bundle reserves some
    (a group made without memory keeps the heap out of Ray's accounting, as RayDP's do)."""
    return {r: a for r, a in demand.items() if r != "memory" or "memory" in bundle}


def _check_bundles(cfg: ClusterConfig, demand: dict[str, float]) -> None:
    """Each executor's bundle of the given placement group must exist and hold its demand."""
    bundles = cfg.placement_group.bundle_specs
    indexes = cfg.placement_group_bundle_indexes or []  # filled in by ClusterConfig
    for executor, index in enumerate(indexes):
        if index >= len(bundles):
            raise ConfigurationError(f"executor {executor}: bundle index {index} but the placement group has "
                                     f"{len(bundles)} bundles")
    for index in set(indexes):
        users = indexes.count(index)
        short = {r: a * users for r, a in bundle_demand(demand, bundles[index]).items()
                 if a * users > bundles[index].get(r, 0.0) + 1e-9}
        if short:
            raise InsufficientResourcesError(
                f"bundle {index} of the placement group ({_fmt(bundles[index])}) cannot hold its {users} executor "
                f"actor(s): they need {_fmt(short)}. Give executors other bundles, or smaller demands "
                "(executor_cpus=, executor_memory=).", resource="bundle", bundle=index)
