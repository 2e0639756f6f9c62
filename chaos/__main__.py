"""`python -m ftbridge.chaos run [--scenarios a,b] [--seeds N] [--report out.json]`"""

from __future__ import annotations

import gc
import os
import sys

import click
import ray
from rich.console import Console
from rich.table import Table

from ftbridge.chaos.env import ChaosEnv, start_cluster
from ftbridge.chaos.matrix import CI_SUBSET, SCENARIOS
from ftbridge.chaos.runner import report
from ftbridge.chaos.runner import run as run_all

console = Console(width=None if sys.stdout.isatty() else 160)


@click.group()
def main():
    """ftbridge chaos harness."""


@main.command()
@click.option("--scenarios", default="all", help="Comma-separated scenario names, 'ci' or 'all'.")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1, 50), help="Seeds per scenario.")
@click.option("--first-seed", "--seed", "first_seed", default=1, show_default=True, type=int,
              help="The first seed (`--seed N` with one seed reruns what a CI run did with N).")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False), help="JSON report path.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="Keep the catalog and driver logs here (default: a temp dir, removed at the end).")
def run(scenarios, seeds, first_seed, report_path, workdir):
    """Run scenarios on a fresh local multi-node Ray cluster and report."""


    names = list(SCENARIOS) if scenarios == "all" else CI_SUBSET if scenarios == "ci" else scenarios.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise click.BadParameter(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}", param_hint="--scenarios")
    if report_path:
        os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
    if workdir:
        os.makedirs(workdir, mode=0o700, exist_ok=True)
    cluster = start_cluster()
    env = ChaosEnv(cluster, workdir=os.path.abspath(workdir) if workdir else None)
    table = Table(title="chaos scenarios")
    for col in ("scenario", "seed", "faults injected", "outcome", "rows lost", "rows duplicated",
                "time to recover", "wall s"):
        table.add_column(col)
    try:
        results = run_all(env, names, list(range(first_seed, first_seed + seeds)),
                          on_result=lambda r: console.print(f"{r.scenario} seed {r.seed}: {r.outcome} {r.detail[:200]}"))
    finally:
        env.close()
        # Drop the run's Datasets, refs and handles while Ray is still up: collected after
        # ray.shutdown(), their destructors would call into a core worker that is gone.
        gc.collect()
        ray.shutdown()
        cluster.shutdown()
    for r in results:
        color = {"recovered": "green", "clean_error": "yellow"}.get(r.outcome, "red")
        table.add_row(r.scenario, str(r.seed), ", ".join(f["kind"] for f in r.faults), f"[{color}]{r.outcome}[/]",
                      str(r.rows_lost), str(r.rows_duplicated), f"{r.recover_seconds:.1f}s", str(r.wall_seconds))
    console.print(table)
    if workdir:
        console.print(f"kept: {env.catalog} (ftbridge audit --catalog {env.catalog})")
    report(results, report_path)
    bad = [r for r in results if r.outcome not in ("recovered", "clean_error")]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
