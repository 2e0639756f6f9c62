"""Typed settings for Spark on Ray."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def memory_mb(self) -> int:
        return self.memory_bytes >> 20

    @property
    def actor_memory_bytes(self) -> int:
        """Heap plus Spark's usual overhead (10%, at least 384MB) plus the worker JVM."""
        return self.memory_bytes + max(384 << 20, self.memory_bytes // 10) + (256 << 20)
