"""`ftbridge`: audit, show, verify, recover, gc, submit and demo. One function per command.

`recover`, `submit` and `demo` start Ray and Spark; their modules are imported when they run, so the
read-only commands answer without loading either engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ftbridge import operations
from ftbridge.cli.exit_codes import ExitCode
from ftbridge.cli.exit_codes import table as exit_code_table
from ftbridge.cli.output import (
    catalog_options,
    console,
    emit_json,
    err_console,
    handle_errors,
    human_bytes,
    native_stderr_to,
    short_paths,
)
from ftbridge.cli.runs import runs_table, show_run
from ftbridge.cluster import scratch
from ftbridge.common.config import env_name
from ftbridge.lineage.kinds import PartitionState
from ftbridge.lineage.reports import Health, PartitionHealth, RunDetail

_EPILOG = "Exit codes:\n\n" + "\n\n".join(exit_code_table().splitlines())


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="ftbridge")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Fault-tolerant Spark -> Ray conversions: audit, verify and recover them."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"verbose": verbose}
    if verbose:  # -v: Ray's and Spark's own output on the terminal too
        os.environ[env_name("ray_log_to_driver")] = "1"


def _engine_output(ctx: click.Context):
    """Where Ray's and Spark's native output goes while a command runs them: the log folder,
    unless -v asked to see it."""
    if ctx.obj and ctx.obj.get("verbose"):
        return contextlib.nullcontext()
    return native_stderr_to(os.path.join(scratch.log_dir(), "native-stderr.log"))


def _health(p: PartitionHealth) -> str:
    if p.released and not (p.healthy or p.degraded or p.lost):
        return f"released ({p.released})"
    parts = [f"[green]{p.healthy}[/]"]
    parts.append(f"[yellow]{p.degraded}[/]" if p.degraded else "0")
    parts.append(f"[red]{p.lost}[/]" if p.lost else "0")
    return " / ".join(parts)


@cli.command()
@catalog_options()
@handle_errors
def audit(catalog, as_json):
    """Every conversion (rows, partition health, recovery events, time to recover) and training run."""
    report = operations.audit(catalog=catalog)
    if as_json:
        return emit_json(report.to_dict())
    table = Table(title=f"ftbridge audit — {report.catalog}")
    for col in ("id", "name", "created", "way", "status", "rows", "bytes", "healthy / degraded / lost",
                "recovery events", "rebuilt", "reconstructed", "TTR median", "TTR worst"):
        table.add_column(col, overflow="fold")
    for r in report.conversions:
        ttr = r.time_to_recover_s
        way = "Ray→Spark" if r.direction == "ray_to_spark" else "Spark→Ray"
        table.add_row(r.id[:12], r.name or "", r.created[:19], way, r.status, f"{r.rows:,}",
                      human_bytes(r.bytes), _health(r.partitions), str(r.recovery_events),
                      str(r.rebuilt), str(r.reconstructed),
                      f"{ttr.median:.2f}s" if ttr.median is not None else "-",
                      f"{ttr.worst:.2f}s" if ttr.worst is not None else "-")
    console.print(table)
    if report.runs:
        console.print(runs_table(report.runs))


@cli.command()
@click.argument("conversion", metavar="CONVERSION_OR_RUN")
@catalog_options()
@handle_errors
def show(conversion, catalog, as_json):
    """One conversion (plan, schema, storage, partitions, events) or training run (inputs, timeline)."""
    detail = operations.show(conversion, catalog=catalog)
    if isinstance(detail, RunDetail):
        return show_run(detail, as_json)
    if as_json:
        return emit_json(detail.to_dict())
    conv = detail.conversion
    console.print(f"[bold]conversion[/] {conv['conversion_id']}  name={conv['name']}  status={conv['status']}")
    console.print(f"created {conv['created_at']}  app {conv['app_id']}  Spark {conv['spark_version']}  "
                  f"storage {conv['storage_level']}")
    console.print(f"spill root {conv['spill_root']} ({'node-local' if conv['node_local'] else 'durable'})  "
                  f"recipe {conv['recipe'] or '-'}")
    console.print(f"plan hash {conv['plan_hash'][:16]}\n[dim]{conv['plan_text']}[/]")
    console.print("schema: " + ", ".join(f"{f.name} {f.type}" for f in detail.schema))
    pt = Table(title="partitions")
    for col in ("partition", "state", "rows", "bytes", "node", "rebuilt", "path"):
        pt.add_column(col, overflow="fold")
    for p in detail.partitions:
        color = {PartitionState.HEALTHY: "green", PartitionState.LOST: "red"}.get(p["state"], "yellow")
        pt.add_row(str(p["partition_id"]), f"[{color}]{p['state']}[/]", f"{p['num_rows']:,}",
                   human_bytes(p["num_bytes"]), (p["node_id"] or "-")[:12], str(p["rebuilt_count"]), p["path"])
    console.print(pt)
    et = Table(title="events")
    for col in ("time", "kind", "partition", "seconds", "node", "detail"):
        et.add_column(col, overflow="fold")
    for e in detail.events:
        et.add_row(str(e["started_at"])[:23], e["kind"], "" if e["partition_id"] is None else str(e["partition_id"]),
                   f"{e['duration_s']:.3f}", (e["node_id"] or "")[:12], short_paths(e["detail"])[:120])
    console.print(et)


@cli.command()
@click.argument("conversion", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every active conversion.")
@catalog_options()
@handle_errors
def verify(conversion, all_, catalog, as_json):
    """Re-check every spill file. Exit 0 healthy, 1 degraded but rebuildable, 2 data lost."""
    if bool(conversion) == bool(all_):
        raise click.UsageError("give a conversion id or --all (not both)")
    reports = operations.verify(*([conversion] if conversion else []), catalog=catalog)
    code = max([r.exit_code for r in reports], default=0)
    if as_json:
        emit_json({"exit_code": code, "conversions": [r.to_dict() for r in reports]})
    else:
        table = Table(title="verify")
        for col in ("id", "name", "healthy", "bad", "rebuildable", "result"):
            table.add_column(col)
        result = {Health.HEALTHY: "[green]healthy[/]", Health.DEGRADED: "[yellow]degraded, rebuildable[/]",
                  Health.DATA_LOST: "[red]data lost[/]"}
        for r in reports:
            table.add_row(r.id[:12], r.name or "", str(r.healthy), str(r.bad), "yes" if r.rebuildable else "no",
                          result[r.health])
            for p in r.partitions:
                if p.state not in (PartitionState.HEALTHY, PartitionState.RELEASED):
                    console.print(f"  partition {p.partition}: [yellow]{p.state}[/] {p.detail}")
        console.print(table)
    sys.exit(code)


@cli.command()
@click.argument("conversion")
@catalog_options()
@handle_errors
@click.pass_context
def recover(ctx, conversion, catalog, as_json):
    """Rebuild missing or corrupt partitions through the conversion's recipe."""
    from ftbridge.api import recover as run_recover  # starts Ray and Spark: see the docstring

    with _engine_output(ctx), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=as_json) as progress:
        task = progress.add_task("verifying", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, description="rebuilding partitions", total=total, completed=done)

        report = run_recover(conversion, catalog=catalog, on_progress=advance)
    if as_json:
        emit_json(report.to_dict())
    else:
        if not report.rebuilt and not report.failed:
            console.print(f"[green]conversion {report.id} is healthy; nothing to rebuild[/]")
        for r in report.rebuilt:
            console.print(f"[green]rebuilt[/] partition {r.partition} -> {r.path}")
        for f in report.failed:
            console.print(f"[red]failed[/] partition {f.partition}: {f.error}")
    sys.exit(report.exit_code)


def connect_ray(address: str) -> None:
    """Join the Ray cluster at `address` (for commands that reach other hosts), or say why not."""
    from ftbridge.cluster.spark_on_ray import ensure_ray
    from ftbridge.common.errors import ConfigurationError

    os.environ["RAY_ADDRESS"] = address
    try:
        ensure_ray()
    except ConfigurationError:
        raise
    except Exception as exc:  # Ray's ConnectionError / RuntimeError: name the address and what to do
        raise ConfigurationError(f"could not join the Ray cluster at {address}: {str(exc).splitlines()[0]}. "
                                 "Run gc on a node of that cluster (`ray status` works there), or leave "
                                 "--ray-address out to reach only this host's files.") from None


@cli.command()
@click.option("--older-than", "older_than", default=None, help="Also expire active conversions older than this (7d).")
@click.option("--events-older-than", "events_older_than", default=None,
              help="Drop partitions and events of conversions released longer ago than this (30d), then "
                   "compact the catalog file.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--ray-address", "ray_address", default=None,
              help="Ray cluster (HOST:PORT, or 'auto') whose hosts hold node-local files; each host deletes its "
                   "own. Default: RAY_ADDRESS if set, else only this host's files are reached.")
@catalog_options()
@handle_errors
def gc(older_than, events_older_than, dry_run, ray_address, catalog, as_json):
    """Delete spill files of released or expired conversions, and copies left on hosts that were down;
    optionally prune old catalog history."""
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        connect_ray(address)
    report = operations.gc(older_than=older_than, events_older_than=events_older_than, dry_run=dry_run,
                           catalog=catalog)
    if as_json:
        return emit_json(report.to_dict())
    verb = "would free" if dry_run else "freed"
    for c in report.conversions:
        hosts = ", ".join(f"{h} {human_bytes(b)}" for h, b in sorted(c.by_host.items()))
        waiting = f"; {c.waiting} files wait for their host" if c.waiting else ""
        console.print(f"{c.id[:12]} ({c.reason}): {c.files} files, {human_bytes(c.bytes)}"
                      f"{f' ({hosts})' if hosts else ''}{waiting}")
    console.print(f"[bold]{verb} {human_bytes(report.bytes_freed)}[/] in {report.files} files")
    if report.waiting:
        hint = ("they are on hosts that are down or did not answer; run gc again once they are back" if report.ray
                else "they are on other hosts: pass --ray-address (or set RAY_ADDRESS) so each host deletes its own")
        console.print(f"[yellow]{report.waiting} files not reached[/]: {hint}")
    if report.catalog is not None:
        r = report.catalog
        console.print(f"catalog history of {r.conversions} conversions released before {r.cutoff:%Y-%m-%d %H:%M}: "
                      f"{r.partitions_removed} partition rows, {r.events_removed} events, "
                      f"{r.run_events_removed} training-run events (runs ended before then) "
                      f"{'would go' if dry_run else 'removed'}; file {human_bytes(r.catalog_bytes_before)} -> "
                      f"{human_bytes(r.catalog_bytes_after)}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--address", default=None, help="Ray cluster HOST:PORT ('local': a new embedded Ray); default: as "
                                              "ray.init() - RAY_ADDRESS, a cluster started here, else a new one.")
@click.option("--num-executors", default=2, show_default=True, type=click.IntRange(0),
              help="Executors (with --max-executors: how many to start with).")
@click.option("--min-executors", default=None, type=click.IntRange(0),
              help="Dynamic allocation: the fewest executors kept (default 0).")
@click.option("--max-executors", default=None, type=click.IntRange(1),
              help="Dynamic allocation: executor actors come and go with Spark's demand, up to this many.")
@click.option("--executor-cores", default=1, show_default=True, type=click.IntRange(1),
              help="Spark task slots per executor.")
@click.option("--executor-memory", default="1GB", show_default=True)
@click.option("--executor-cpus", default=None, type=click.FloatRange(0),
              help="Ray CPUs each executor actor holds (fractions allowed); default: --executor-cores.")
@click.option("--conf", "confs", multiple=True, metavar="KEY=VALUE", help="A Spark setting (repeatable).")
@click.option("--encrypt", is_flag=True, help="Encrypt Spark's RPC traffic (it is always authenticated).")
@click.option("--name", "app_name", default=None, help="Spark application name (default: the script's name).")
@click.argument("script", type=click.Path(dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
@click.pass_context
def submit(ctx, address, num_executors, min_executors, max_executors, executor_cores, executor_memory, executor_cpus,
           confs, encrypt, app_name, script, script_args):
    """Run a PySpark script on Spark on Ray, like spark-submit; exit with the script's exit code.

    The script's `SparkSession.builder.getOrCreate()` returns the Ray-backed session. Spark,
    its JVMs and (if this command started it) Ray are stopped when the script ends, fails or
    is interrupted.
    """
    from ftbridge.cli.submit import run_submit  # starts Ray and Spark: see the docstring

    configs = {}
    for item in confs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--conf")
        configs[key.strip()] = value
    with _engine_output(ctx):
        code = run_submit(script, list(script_args), address=address, num_executors=num_executors,
                          executor_cores=executor_cores, executor_memory=executor_memory,
                          executor_cpus=executor_cpus, configs=configs, app_name=app_name,
                          min_executors=min_executors, max_executors=max_executors, encrypt=encrypt)
    sys.exit(code)


@cli.command()
@click.option("--rows", default=200_000, show_default=True, help="Rows in the demo DataFrame.")
@catalog_options(read=False)
@handle_errors
@click.pass_context
def demo(ctx, rows, catalog):
    """The main job: Spark on an embedded Ray, a recoverable conversion, failures, recovery, audit."""
    # The demo prints its own story. Ray Data sets its loggers' level when it is first
    # imported, from this variable, so it is set before the demo module loads Ray Data.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    from ftbridge.cli.demo import run_demo  # starts Ray and Spark: see the docstring

    with _engine_output(ctx):
        code = run_demo(rows=rows, catalog=catalog)
    sys.exit(int(ExitCode.HEALTHY if code == 0 else ExitCode.FAILED))


def main() -> None:
    """The console script: usage errors exit 3 (bad input), not click's 2 (which means data lost here)."""
    try:
        code = cli.main(prog_name="ftbridge", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(int(ExitCode.BAD_INPUT))
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.FAILED))
    except click.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
