"""How the CLI shows training runs: the audit's runs table and `ftbridge show RUN`'s timeline."""

from __future__ import annotations

from rich.table import Table

from ftbridge.cli.output import console, emit_json, short_paths
from ftbridge.lineage.audit import run_record


def runs_table(runs: list[dict]) -> Table:
    table = Table(title="training runs")
    for col in ("run", "name", "trainer", "started", "status", "inputs", "epochs", "checkpoints", "worker failures",
                "restarts", "recovery events", "time lost"):
        table.add_column(col, overflow="fold")
    for r in runs:
        color = {"finished": "green", "failed": "red"}.get(r["status"], "yellow")
        table.add_row(r["id"][:12], r["name"] or "", r["trainer"] or "", r["started"][:19], f"[{color}]{r['status']}[/]",
                      ", ".join(f"{k}={v[:8]}" for k, v in r["inputs"].items()), str(r["epochs_completed"]),
                      str(r["checkpoints"]), str(r["worker_failures"]), str(r["restarts"]), str(r["recovery_events"]),
                      f"{r['time_lost_s']:.1f}s")
    return table


def show_run(run: dict, con, as_json: bool):
    summary, timeline = run_record(con, run)
    if as_json:
        return emit_json({"run": summary, "timeline": timeline})
    console.print(f"[bold]training run[/] {summary['id']}  name={summary['name']}  trainer={summary['trainer']}  "
                  f"status={summary['status']}")
    console.print(f"Ray Train run {summary['ray_run_id'] or '-'}  started {summary['started'][:19]}  "
                  f"took {summary['seconds'] if summary['seconds'] is not None else '-'}s  "
                  f"epochs {summary['epochs_completed']}  attempts {summary['attempts']}  "
                  f"time lost {summary['time_lost_s']:.1f}s")
    console.print("inputs: " + ", ".join(f"{k} = conversion {v}" for k, v in summary["inputs"].items()))
    if summary["error"]:
        console.print(f"[red]error[/] {summary['error']}")
    tt = Table(title="timeline")
    for col in ("time", "what", "epoch", "conversion", "partition", "detail"):
        tt.add_column(col, overflow="fold")
    for row in timeline:
        tt.add_row(str(row["at"])[:23], row["what"], "" if row["epoch"] is None else str(row["epoch"]),
                   (row["conversion"] or "")[:12], "" if row["partition"] is None else str(row["partition"]),
                   short_paths(row["detail"])[:120])
    console.print(tt)
