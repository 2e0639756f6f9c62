"""Typed settings for Spark on Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftbridge.cluster import auth
from ftbridge.cluster.jvm import parse_memory
from ftbridge.common.config import settings
from ftbridge.common.errors import ConfigurationError

PG_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"spark.dynamicAllocation.{what} must be an integer, got {text!r}") from None


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
    min_executors: int | None = None
    """Dynamic allocation: the fewest executor actors Spark keeps (default 0)."""
    max_executors: int | None = None
    """Dynamic allocation: the most executor actors Spark may ask for. Giving it (or
    spark.dynamicAllocation.enabled=true in configs) turns dynamic allocation on;
    num_executors is then the initial count."""
    encrypt: bool = False
    """Encrypt Spark's RPC traffic (spark.network.crypto.enabled) between the driver, master,
    workers and executors. RPC is always authenticated, with or without it."""

    def __post_init__(self) -> None:
        if not self.app_name or not isinstance(self.app_name, str):
            raise ConfigurationError("app_name must be a non-empty string")
        self.configs = {str(k): str(v) for k, v in (self.configs or {}).items()}
        # Not a field: no repr, comparison or copy of the settings shows it.
        self.auth_secret = auth.take_secret(self.configs)
        if self.configs.get("spark.network.crypto.enabled", "").strip().lower() == "true":
            self.encrypt = True  # the master and workers must encrypt too
        if not isinstance(self.encrypt, bool):
            raise ConfigurationError(f"encrypt must be True or False, got {self.encrypt!r}")
        self._check_dynamic()
        for name in ("num_executors", "executor_cores"):
            value = getattr(self, name)
            low = 0 if name == "num_executors" and self.dynamic else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        self.memory_bytes = parse_memory(self.executor_memory)
        if self.memory_bytes < 256 << 20:
            raise ConfigurationError(f"executor_memory must be at least 256MB, got {self.executor_memory!r}")
        if self.placement_group_strategy is not None and self.placement_group_strategy not in PG_STRATEGIES:
            raise ConfigurationError(
                f"placement_group_strategy must be one of {PG_STRATEGIES} or None, "
                f"got {self.placement_group_strategy!r}"
            )
        self.executor_cpus = float(self.executor_cores if self.executor_cpus is None else self.executor_cpus)
        for name in ("executor_cpus", "executor_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        self._check_placement_group()

    @property
    def dynamic(self) -> bool:
        return self.max_executors is not None

    @property
    def executor_bounds(self) -> tuple[int, int]:
        """(fewest, most) executors: min/max_executors with dynamic allocation, else num_executors twice."""
        if self.max_executors is None:
            return self.num_executors, self.num_executors
        return self.min_executors or 0, self.max_executors

    def _check_dynamic(self) -> None:
        """min/max_executors from the arguments or from spark.dynamicAllocation.* in configs."""
        enabled = self.configs.get("spark.dynamicAllocation.enabled", "").lower() == "true"
        if not enabled and self.min_executors is None and self.max_executors is None:
            return
        if self.max_executors is None and "spark.dynamicAllocation.maxExecutors" in self.configs:
            self.max_executors = _int(self.configs["spark.dynamicAllocation.maxExecutors"], "maxExecutors")
        if self.min_executors is None:
            self.min_executors = _int(self.configs.get("spark.dynamicAllocation.minExecutors", "0"), "minExecutors")
        if self.max_executors is None:
            raise ConfigurationError("dynamic allocation needs max_executors= (or spark.dynamicAllocation."
                                     "maxExecutors): each executor is a Ray actor holding resources")
        for name in ("min_executors", "max_executors"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.min_executors <= self.num_executors <= self.max_executors or self.max_executors < 1:
            raise ConfigurationError(
                f"dynamic allocation needs min_executors <= num_executors <= max_executors and max_executors >= 1, "
                f"got {self.min_executors} <= {self.num_executors} <= {self.max_executors}")
        if self.placement_group is not None or self.placement_group_strategy is not None:
            raise ConfigurationError("dynamic allocation cannot be combined with a placement group: its bundles "
                                     "are fixed. Drop placement_group(_strategy)= or min/max_executors=.")

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
