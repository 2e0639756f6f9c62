"""Re-check every spill file of a conversion: present, right size, right checksum."""

from __future__ import annotations

import os
import socket
import time

import pyarrow as pa

from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.spill.write import file_checksum
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import BAD_STATES, ConversionStatus, EventKind
from ftbridge.lineage.kinds import PartitionState as S
from ftbridge.lineage.reports import Health, PartitionCheck, VerifyReport
from ftbridge.lineage.rows import PartitionUpdate, new_event
from ftbridge.lineage.writer import CatalogClient


def check_file(target: SpillTarget, part: dict) -> tuple[S, str]:
    """(state, detail) of one partition's spill file."""
    fs, _ = target.filesystem()
    try:
        info = fs.get_file_info(part["path"])
    except (OSError, pa.ArrowException) as exc:
        return S.MISSING, f"cannot stat {part['path']}: {exc}"
    if info.type != pa.fs.FileType.File:
        return S.MISSING, f"{part['path']} does not exist"
    if info.size != part["num_bytes"]:
        return S.CORRUPT, f"{part['path']} has {info.size} bytes, catalog says {part['num_bytes']}"
    checksum, _ = file_checksum(fs, part["path"], part["checksum"])
    if checksum != part["checksum"]:
        return S.CORRUPT, f"{part['path']} checksum {checksum}, catalog says {part['checksum']}"
    return S.HEALTHY, part["path"]


def driver_alive(conv: dict) -> bool:
    """Whether the process that made the conversion still runs on this host (it can rebuild)."""
    if conv.get("driver_host") != socket.gethostname() or not conv.get("driver_pid"):
        return False
    try:
        os.kill(int(conv["driver_pid"]), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def verify(catalog: Catalog, conversion_id: str) -> VerifyReport:
    """Check every file, record the results as events and states; return a report."""
    conv, parts = catalog.load(conversion_id)
    cid = conv["conversion_id"]
    target = SpillTarget.recorded(conv)
    results, events, updates = [], [], []
    for part in parts:
        if conv["status"] == ConversionStatus.RELEASED or part["state"] == S.RELEASED:
            state, detail = S.RELEASED, "released"
        else:
            started = time.time()
            state, detail = check_file(target, part)
            kind = EventKind.VERIFY_OK if state == S.HEALTHY else EventKind.VERIFY_FAILED
            events.append(new_event(cid, part["partition_id"], kind, started, part["node_id"], "verify",
                                    f"{state}: {detail}"))
            if state != part["state"]:
                updates.append((part["partition_id"], PartitionUpdate(state=state)))
        results.append(PartitionCheck(partition=part["partition_id"], state=state, detail=detail, path=part["path"],
                                      node_id=part["node_id"]))
    if events or updates:
        CatalogClient.direct(catalog).update_partitions(cid, updates, events)
    bad = [r for r in results if r.state in BAD_STATES]
    rebuildable = bool(conv.get("recipe")) or driver_alive(conv)
    health = Health.HEALTHY if not bad else Health.DEGRADED if rebuildable else Health.DATA_LOST
    return VerifyReport(id=cid, name=conv["name"], status=conv["status"], health=health,
                        healthy=sum(r.state == S.HEALTHY for r in results), bad=len(bad), rebuildable=rebuildable,
                        partitions=results)
