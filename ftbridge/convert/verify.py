"""Re-check every spill file of a conversion: present, right size, right checksum."""

from __future__ import annotations

import os
import time

import pyarrow as pa

from ftbridge.convert.spill import SpillTarget, file_checksum
from lineage import queries, records
from lineage.catalog import Catalog, new_event

OK, MISSING, CORRUPT, LOST, RELEASED = "healthy", "missing", "corrupt", "lost", "released"


def check_file(target: SpillTarget, part: dict) -> tuple[str, str]:
    """(state, detail) of one partition's spill file."""
    fs, _ = target.filesystem()
    try:
        info = fs.get_file_info(part["path"])
    except (OSError, pa.ArrowException) as exc:
        return MISSING, f"cannot stat {part['path']}: {exc}"
    if info.type != pa.fs.FileType.File:
        return MISSING, f"{part['path']} does not exist"
    if info.size != part["num_bytes"]:
        return CORRUPT, f"{part['path']} has {info.size} bytes, catalog says {part['num_bytes']}"
    checksum, _ = file_checksum(fs, part["path"], part["checksum"])
    if checksum != part["checksum"]:
        return CORRUPT, f"{part['path']} checksum {checksum}, catalog says {part['checksum']}"
    return OK, part["path"]


def driver_alive(conv: dict) -> bool:
    """Whether the process that made the conversion still runs on this host (it can rebuild)."""
    import socket

    if conv.get("driver_host") != socket.gethostname() or not conv.get("driver_pid"):
        return False
    try:
        os.kill(int(conv["driver_pid"]), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def verify(catalog: Catalog, conversion_id: str, on_partition=None) -> dict:
    """Check every file, record the results as events and states; return a report."""
    with catalog.read() as con:
        conv = queries.conversion(con, conversion_id)
        parts = queries.partitions(con, conv["conversion_id"])
    cid = conv["conversion_id"]
    target = SpillTarget(conv["spill_root"], bool(conv["node_local"]))
    results, events, updates = [], [], []
    for part in parts:
        if conv["status"] == "released" or part["state"] == RELEASED:
            state, detail = RELEASED, "released"
        else:
            started = time.time()
            state, detail = check_file(target, part)
            kind = "verify_ok" if state == OK else "verify_failed"
            events.append(new_event(cid, part["partition_id"], kind, started, part["node_id"], "verify",
                                    f"{state}: {detail}"))
            if state != part["state"]:
                updates.append((part["partition_id"], state))
        results.append({"partition": part["partition_id"], "state": state, "detail": detail,
                        "path": part["path"], "node_id": part["node_id"]})
        if on_partition:
            on_partition(results[-1])
    if events or updates:
        with catalog.write() as con:
            for pid, state in updates:
                records.update_partition(con, cid, pid, {"state": state})
            records.insert_events(con, events)
    bad = [r for r in results if r["state"] in (MISSING, CORRUPT, LOST)]
    rebuildable = bool(conv.get("recipe")) or driver_alive(conv)
    if not bad:
        code = 0
    elif rebuildable:
        code = 1
    else:
        code = 2
    return {"id": cid, "name": conv["name"], "status": conv["status"], "exit_code": code,
            "healthy": sum(r["state"] == OK for r in results), "bad": len(bad), "rebuildable": rebuildable,
            "partitions": results}
