"""How the CLI shows training runs: the audit's runs table and `ftbridge show RUN`'s timeline."""

from __future__ import annotations

from rich.table import Table

from ftbridge.cli.output import console, emit_json, short_paths
from ftbridge.lineage.reports import RunDetail, RunSummary


def runs_table(runs: list[RunSummary]) -> Table:
    table = Table(title="training runs")
    for col in ("run", "name", "trainer", "started", "status", "inputs", "epochs", "checkpoints", "worker failures",
                "restarts", "resumed mid-epoch", "recovery events", "time lost"):
        table.add_column(col, overflow="fold")
    for r in runs:
        color = {"finished": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(r.id[:12], r.name or "", r.trainer or "", r.started[:19], f"[{color}]{r.status}[/]",
                      ", ".join(f"{k}={v[:8]}" for k, v in r.inputs.items()), str(r.epochs_completed),
                      str(r.checkpoints), str(r.worker_failures), str(r.restarts), str(r.resumes), str(r.recovery_events),
                      f"{r.time_lost_s:.1f}s")
    return table


def show_run(detail: RunDetail, as_json: bool):
    if as_json:
        return emit_json(detail.to_dict())
    s = detail.run
    console.print(f"[bold]training run[/] {s.id}  name={s.name}  trainer={s.trainer}  status={s.status}")
    console.print(f"Ray Train run {s.ray_run_id or '-'}  started {s.started[:19]}  "
                  f"took {s.seconds if s.seconds is not None else '-'}s  "
                  f"epochs {s.epochs_completed}  attempts {s.attempts}  resumed mid-epoch {s.resumes}  "
                  f"time lost {s.time_lost_s:.1f}s")
    console.print("inputs: " + ", ".join(f"{k} = conversion {v}" for k, v in s.inputs.items()))
    if s.error:
        console.print(f"[red]error[/] {s.error}")
    tt = Table(title="timeline")
    for col in ("time", "what", "epoch", "conversion", "partition", "detail"):
        tt.add_column(col, overflow="fold")
    for row in detail.timeline:
        tt.add_row(str(row.at)[:23], row.what, "" if row.epoch is None else str(row.epoch),
                   (row.conversion or "")[:12], "" if row.partition is None else str(row.partition),
                   short_paths(row.detail)[:120])
    console.print(tt)
