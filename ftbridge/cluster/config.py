"""Typed settings for Spark on Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftbridge.cluster.jvm import parse_memory
from ftbridge_common.config import settings
from ftbridge_common.errors import ConfigurationError

PG_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class ClusterConfig:
    """What `init_spark` was asked for, checked once."""

    app_name: str
    """Spark application name."""
    num_executors: int
    """How many executor actors (one Spark executor each)."""
    executor_cores: int
    """Ray CPUs each executor actor holds, and Spark task slots per executor."""
    executor_memory: str
    """Spark executor heap, e.g. '1GB'; the actor asks Ray for this plus overhead."""
    configs: dict[str, str] = field(default_factory=dict)
    """Extra Spark configuration; wins over ftbridge's defaults."""
    placement_group_strategy: str | None = None
    """None (Ray places actors freely) or a placement group strategy such as 'SPREAD'."""
    start_timeout_s: float = field(default_factory=lambda: settings().start_timeout_s)
    """Bound on every start-up wait (env FTBRIDGE_START_TIMEOUT_S)."""
    max_executor_restarts: int = -1
    """How often Ray restarts a dead executor actor (-1: always)."""
    executor_resources: dict[str, float] = field(default_factory=dict)
    """Extra custom Ray resources each executor actor asks for, e.g. {"spark_node": 1}."""
    executor_cpus: float | None = None
    """Ray CPUs each executor actor holds (fractions allowed); default: executor_cores. Spark
    still runs executor_cores task slots in it."""
    executor_gpus: float = 0
    """Ray GPUs each executor actor holds."""
    placement_group: Any = None
    """An existing Ray placement group to put the executors in (then no strategy)."""
    placement_group_bundle_indexes: list[int] | None = None
    """Bundle of `placement_group` for each executor (default 0, 1, 2, ...)."""
    master_port: int | None = None
    """Port of the Spark master (default: a free port)."""

    def __post_init__(self) -> None:
        if not self.app_name or not isinstance(self.app_name, str):
            raise ConfigurationError("app_name must be a non-empty string")
        for name in ("num_executors", "executor_cores"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        self.memory_bytes = parse_memory(self.executor_memory)
        if self.memory_bytes < 256 << 20:
            raise ConfigurationError(f"executor_memory must be at least 256MB, got {self.executor_memory!r}")
        if self.placement_group_strategy is not None and self.placement_group_strategy not in PG_STRATEGIES:
            raise ConfigurationError(
                f"placement_group_strategy must be one of {PG_STRATEGIES} or None, "
                f"got {self.placement_group_strategy!r}"
            )
        self.configs = {str(k): str(v) for k, v in (self.configs or {}).items()}
        self.executor_cpus = float(self.executor_cores if self.executor_cpus is None else self.executor_cpus)
        for name in ("executor_cpus", "executor_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        self._check_placement_group()

    def _check_placement_group(self) -> None:
        if self.placement_group is None:
            if self.placement_group_bundle_indexes is not None:
                raise ConfigurationError("placement_group_bundle_indexes needs placement_group=")
            return
        if self.placement_group_strategy is not None:
            raise ConfigurationError("give placement_group= (an existing group) or placement_group_strategy= "
                                     "(ftbridge makes one), not both")
        indexes = self.placement_group_bundle_indexes
        if indexes is None:
            self.placement_group_bundle_indexes = list(range(self.num_executors))
        elif len(indexes) != self.num_executors or not all(isinstance(i, int) and i >= 0 for i in indexes):
            raise ConfigurationError(f"placement_group_bundle_indexes must be {self.num_executors} bundle indexes "
                                     f"(one per executor, >= 0), got {indexes!r}")

    def actor_demand(self) -> dict[str, float]:
        """What one executor actor asks Ray for."""
        demand = {"CPU": self.executor_cpus, "memory": float(self.actor_memory_bytes), **self.executor_resources}
        if self.executor_gpus:
            demand["GPU"] = self.executor_gpus
        return {k: v for k, v in demand.items() if v}

    @property
    def memory_mb(self) -> int:
        return self.memory_bytes >> 20

    @property
    def actor_memory_bytes(self) -> int:
        """Heap plus Spark's usual overhead (10%, at least 384MB) plus the worker JVM."""
        return self.memory_bytes + max(384 << 20, self.memory_bytes // 10) + (256 << 20)
