"""ftbridge's settings, in one typed place.

Every knob is a field of `Settings` with a default that works on a laptop and an environment
variable named `FTBRIDGE_<FIELD>` for operators. `settings()` reads the environment each time
it is called (so a change made after import takes effect), applies keyword overrides, and
validates everything here, raising `ConfigurationError` naming the variable and the value.
No other module reads an `FTBRIDGE_*` variable. The docs' settings table (docs/reference/settings.md) is `markdown_table()`
(a test keeps them equal).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ftbridge.common.errors import ConfigurationError

PREFIX = "FTBRIDGE_"
# Set by ftbridge itself in each executor actor's environment (not a user setting): the Ray
# node the executor runs on, which names the node-local spill folder its partitions go to.
EXECUTOR_NODE_ENV = PREFIX + "RAY_NODE_ID"
EXECUTOR_ACTOR_ENV = PREFIX + "EXECUTOR_ACTOR"
# The Ray namespace of ftbridge's named actors (catalog writer, rebuild service, restager).
RAY_NAMESPACE = "ftbridge"


def _setting(default, doc: str, shown: str | None = None, choices: tuple = (), minimum: float | None = 0):
    """A Settings field: its default, one line for the docs' table, how it shows the default."""
    return field(default=default, metadata={"doc": doc, "shown": shown, "choices": choices, "minimum": minimum})


@dataclass(frozen=True)
class Settings:
    """Every ftbridge setting; the environment variable is FTBRIDGE_ + the field name in capitals."""

    catalog: str = _setting("~/.ftbridge/catalog.duckdb", "catalog file (the `catalog=` argument wins)")
    spill_dir: str | None = _setting(None, "node-local spill root", shown="`$TMPDIR/ftbridge-$UID/spill`")
    cache_dir: str | None = _setting(None, "where the compiled spill-writer jar and the JVMs' class-sharing "
                                     "archive are kept",
                                     shown="`$XDG_CACHE_HOME/ftbridge` or `~/.cache/ftbridge`")
    spill_writer: str = _setting("auto", "`auto`: the JVM writer for local spill roots when its jar is built; "
                                 "`python`: always Python workers", choices=("auto", "python"))
    cds: str = _setting("auto", "`auto`: Spark's JVMs start from a class-sharing archive built once per Java "
                        "and Spark install; `off`: never", choices=("auto", "off"))
    jvm_profile: str = _setting("server", "`server`: the driver's and executors' JVMs keep Java's full JIT and "
                                "collector (long, heavy jobs); `small`: C1 JIT only and a serial collector, "
                                "about a third less CPU for short sessions on small machines",
                                choices=("server", "small"))
    start_timeout_s: float = _setting(120.0, "bound on every Spark-on-Ray start-up wait")
    spark_job_timeout_s: float = _setting(1800.0, "spill job bound (then cancelled)")
    rebuild_job_timeout_s: float = _setting(300.0, "one partition's Spark rebuild (then cancelled)")
    rebuild_timeout_s: float = _setting(600.0, "a reader's wait for a rebuild it asked for")
    read_timeout_s: float = _setting(900.0, "building a Dataset from its read tasks")
    fetch_timeout_s: float = _setting(120.0, "a read task's wait for a node-local file served by its node")
    host_node_wait_s: float = _setting(30.0, "a session ftbridge did not start: the wait for a Ray node at the "
                                             "address of a host that wrote spill files and has none up (Ray on "
                                             "Spark starts a lost worker node again)")
    read_tasks_per_node: int = _setting(2, "read tasks per node per conversion", minimum=1)
    read_max_retries: int = _setting(5, "Ray retries of a read task whose worker or node died")
    to_spark_timeout_s: float = _setting(900.0, "writing a Dataset's blocks for `to_spark`")
    catalog_lock_timeout_s: float = _setting(60.0, "retries while the catalog file is busy")
    catalog_call_timeout_s: float = _setting(90.0, "a call to the catalog writer actor")
    catalog_lease_s: float = _setting(30.0, "a driver that stopped renewing its lease on the catalog writer "
                                      "(it died) has let go after this; the last to let go ends the writer",
                                      minimum=1)
    remote_io_retry_s: float = _setting(30.0, "retries of transient errors on a remote spill store")
    recover_executors: int = _setting(1, "executors of the Spark that `ftbridge recover` starts", minimum=1)
    recover_executor_cores: int = _setting(1, "cores of each of those executors", minimum=1)
    recover_executor_memory: str = _setting("1GB", "heap of each of those executors")
    warm_up: bool = _setting(True, "`init_spark` starts, in the background, the Ray workers and services the "
                             "first conversion would otherwise wait for")
    ray_log_to_driver: bool = _setting(False, "Ray workers' output on the driver's terminal (else only in "
                                       "Ray's session logs)")
    log_dir: str | None = _setting(None, "where the driver JVM's output (Spark's log lines) goes, one folder "
                                   "per process", shown="`$TMPDIR/ftbridge-$UID/logs`")
    log_keep: int = _setting(10, "how many of those per-process log folders are kept", minimum=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value not in meta["choices"]:
                raise _bad(f.name, value, f"one of {', '.join(meta['choices'])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and meta["minimum"] is not None \
                    and value < meta["minimum"]:
                raise _bad(f.name, value, f"a number >= {meta['minimum']}")

    @property
    def catalog_path(self) -> str:
        return os.path.abspath(os.path.expanduser(self.catalog))

    @property
    def spill_root(self) -> str:
        return self.spill_dir or os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}", "spill")

    @property
    def log_root(self) -> str:
        return os.path.abspath(os.path.expanduser(
            self.log_dir or os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}", "logs")))

    @property
    def cache_root(self) -> str:
        return self.cache_dir or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "ftbridge")

    @property
    def jar_cache(self) -> str:
        return os.path.join(self.cache_root, "jars")


def env_name(name: str) -> str:
    return PREFIX + name.upper()


def _bad(name: str, value: Any, wanted: str) -> ConfigurationError:
    return ConfigurationError(f"{env_name(name)} (setting {name!r}) must be {wanted}, got {value!r}",
                              setting=name, value=value)


def _parse(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise _bad(name, text, {"bool": "true or false", "int": "an integer", "float": "a number"}[kind]) from None
    return text


def _kind(f) -> str:
    return str(f.type).split(" ")[0].replace("'", "")


def settings(**overrides: Any) -> Settings:
    """The settings now: keyword overrides, else FTBRIDGE_* variables, else defaults.

    Raises:
        ConfigurationError: a variable or override cannot be read, or is out of range.
    """
    names = {f.name for f in fields(Settings)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigurationError(f"unknown ftbridge settings {sorted(unknown)}; known: {sorted(names)}")
    values: dict[str, Any] = {}
    for f in fields(Settings):
        text = os.environ.get(env_name(f.name))
        if text is not None and text != "":
            values[f.name] = _parse(f.name, _kind(f), text)
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
    return replace(Settings(), **values) if values else Settings()


def executor_node_id() -> str | None:
    """The Ray node id ftbridge put in this executor's environment (None outside executors)."""
    return os.environ.get(EXECUTOR_NODE_ENV)


def markdown_table() -> str:
    """The settings table of docs/reference/settings.md."""
    rows = ["| Variable | Default | What it bounds or chooses |", "|---|---|---|"]
    for f in fields(Settings):
        shown = f.metadata["shown"] or (f"`{f.default}`" if isinstance(f.default, str) else
                                        str(f.default).lower() if isinstance(f.default, bool) else f"{f.default:g}")
        rows.append(f"| `{env_name(f.name)}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
