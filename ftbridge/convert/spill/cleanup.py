"""Deleting a conversion's files where they are: node-local files on the host that holds them.

A node-local spill or staged file lives on one host's disk; the driver's filesystem does not see
it. So the files of each node are deleted by a Ray task pinned to that node (or, for a node that
is gone, to a live node on the same host, which sees the same disk). A file whose host is down or
does not answer within the bound cannot be deleted now: it is returned as waiting, recorded in
the catalog's `leftover_files`, and `ftbridge gc` deletes it once its host is back. Files on a
shared root (a mount or an object store) are deleted by the driver, as before.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.cluster.nodewatch import wait_pinned
from ftbridge.common.config import settings
from ftbridge.convert.spill.target import SAFE_ID, SpillTarget, rmdir_quietly

log = logging.getLogger(__name__)

SHARED = "shared store"
_FILE = re.compile(r"^part-\d{5}\.arrow$")
# A file a writer had not finished (both writers write `<file>.tmp-<uuid hex>`, then rename): what
# an executor killed mid-file leaves behind; no catalog row names it.
_PARTIAL = re.compile(r"^part-\d{5}\.arrow\.tmp-[0-9a-f]{32}$")


@dataclass
class Freed:
    """What one deletion pass did: bytes freed per host, paths now gone, files still waiting."""

    by_host: dict[str, int] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)       # deleted, or found absent on their host
    waiting: list[dict] = field(default_factory=list)   # leftover rows: host down or not answering
    files: int = 0                                      # files that existed (and were deleted, unless dry run)

    @property
    def total(self) -> int:
        return sum(self.by_host.values())

    def add(self, host: str, path: str, size: int | None) -> None:
        self.gone.append(path)
        if size is not None:
            self.files += 1
            self.by_host[host] = self.by_host.get(host, 0) + size

    def describe(self) -> str:
        """For the released event: "3.1 MB freed: 10.0.0.2 2.0 MB, 10.0.0.3 1.1 MB; 2 files wait for ..."."""
        text = f"{self.total} bytes freed"
        if self.by_host:
            text += " (" + ", ".join(f"{h}: {b} bytes" for h, b in sorted(self.by_host.items())) + ")"
        if self.waiting:
            hosts = sorted({w.get("host") or w.get("node_id") or "?" for w in self.waiting})
            text += (f"; {len(self.waiting)} files on {', '.join(hosts)} could not be reached and wait for "
                     "`ftbridge gc` once that host is back")
        return text


def _inside(root: str, conversion_id: str, path: str) -> bool:
    """Whether `path` is one of this conversion's files under `root` (never delete anything else)."""
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    return (real.startswith(os.path.realpath(root) + os.sep) and os.path.basename(parent) == conversion_id
            and bool(_FILE.match(os.path.basename(real))))


def delete_local(root: str, conversion_id: str, paths: list[str], dry_run: bool = False) -> list[int | None]:
    """Delete this host's copies of `paths` (each a file of the conversion under `root`); the size of
    each one found, None for one absent. Empty conversion and node folders go too."""
    sizes: list[int | None] = []
    for path in paths:
        if not _inside(root, conversion_id, path):
            log.warning("not deleting %s: not a file of conversion %s under %s", path, conversion_id, root)
            sizes.append(None)
            continue
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            sizes.append(None)
            continue
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                sizes.append(None)
                continue
            folder = os.path.dirname(path)
            rmdir_quietly(folder)
            rmdir_quietly(os.path.dirname(folder))
        sizes.append(size)
    if not dry_run:
        delete_partials(root, conversion_id)
    return sizes


def delete_rest(root: str, conversion_id: str, dry_run: bool = False,
                done: Sequence[str] = ()) -> list[tuple[str, int]]:
    """Delete every other file of the conversion on this host (under `root`, in its folder and in
    each node folder): files no catalog row names, e.g. one an executor wrote just before its host
    was cut off, whose task Spark then ran again elsewhere. Only for a conversion that is gone as a
    whole (released). `done`: the paths just deleted (or, in a dry run, sized) by name, skipped.
    Returns (path, size) of each one."""
    skip = {os.path.realpath(p) for p in done}
    found = _sweep(root, conversion_id, lambda name, path: bool(_FILE.match(name) or _PARTIAL.match(name))
                   and os.path.realpath(path) not in skip, dry_run)
    if found:
        log.info("%s %d files of conversion %s under %s that no catalog row named", "found" if dry_run else "deleted",
                 len(found), conversion_id, root)
    return found


def delete_partials(root: str, conversion_id: str) -> int:
    """Delete the conversion's unfinished files on this host (see `_PARTIAL`), in its folder under
    `root` and under each node folder of `root`; returns how many. Empty folders go too."""
    count = len(_sweep(root, conversion_id, lambda name, _: bool(_PARTIAL.match(name)), dry_run=False))
    if count:
        log.info("deleted %d unfinished files of conversion %s under %s (a writer killed mid-file)",
                 count, conversion_id, root)
    return count


def _sweep(root: str, conversion_id: str, wanted, dry_run: bool) -> list[tuple[str, int]]:
    """Delete (or, in a dry run, size) each file `wanted(name, path)` in the conversion's folder
    under `root` and under each node folder of `root`; (path, size) of each. Empty folders go too."""
    if not SAFE_ID.match(conversion_id) or not os.path.isdir(root):  # a safe path component only
        return []
    found: list[tuple[str, int]] = []
    folders = [os.path.join(root, conversion_id)] + [os.path.join(root, node, conversion_id)
                                                     for node in os.listdir(root)]
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:  # no such folder (or not a folder)
            continue
        for name in names:
            path = os.path.join(folder, name)
            if not wanted(name, path):
                continue
            try:  # counted only by the pass that deletes it (two nodes of one host may both look)
                size = os.stat(path).st_size
                if not dry_run:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            found.append((path, size))
        if not dry_run:
            rmdir_quietly(folder)
            if os.path.dirname(folder) != root:
                rmdir_quietly(os.path.dirname(folder))
    return found


@ray.remote(num_cpus=0, max_retries=0)
def _delete_on_node(root: str, conversion_id: str, paths: list[str], dry_run: bool,
                    sweep: list[str] | None = None) -> tuple[str, list, list]:
    """`sweep`: also delete the conversion's other files here (`delete_rest`), but these, which
    this pass deletes by name (a dry run deletes nothing, so it must not count them twice)."""
    sizes = delete_local(root, conversion_id, paths, dry_run)
    rest = delete_rest(root, conversion_id, dry_run, sweep) if sweep is not None else []
    return ray.util.get_node_ip_address(), sizes, rest


def _nodes() -> tuple[dict[str, str], dict[str, str]]:
    """({node id: IP} of every node Ray knows, alive or dead; {IP: a live node id on it})."""
    ips: dict[str, str] = {}
    live: dict[str, str] = {}
    for n in ray.nodes():
        ips[n["NodeID"]] = n.get("NodeManagerAddress")
        if n.get("Alive"):
            live.setdefault(n.get("NodeManagerAddress"), n["NodeID"])
    return ips, live


def free(conv: dict, files: list[dict], dry_run: bool = False, timeout_s: float | None = None,
         whole: bool = False) -> Freed:
    """Delete (or, with `dry_run`, size) `files` of a conversion on the hosts that hold them.

    `files`: rows with `path`, `node_id`, optionally `partition_id` and `host` (partition rows or
    leftover rows). Without Ray, only this host's files can be reached: a node-local file not found
    here is reported as waiting, unless it was written outside any Ray node. `whole`: the
    conversion is gone as a whole (released), so every live host also deletes the conversion's
    files no row names (`delete_rest`).
    """
    target = SpillTarget.recorded(conv)
    freed = Freed()
    if not files and not (whole and target.node_local and target.is_local and ray.is_initialized()):
        return freed
    if not (target.node_local and target.is_local):
        _free_shared(target, conv["conversion_id"], files, dry_run, freed)
        return freed
    if not ray.is_initialized():
        _free_here(target, conv["conversion_id"], files, dry_run, freed)
        return freed
    ips, live = _nodes()
    groups: dict[str, list[dict]] = {}
    here: list[dict] = []
    for f in files:
        ip = f.get("host") or ips.get(f.get("node_id") or "")
        node = f.get("node_id") if f.get("node_id") in live.values() else live.get(ip or "")
        if ip is None:  # written outside a Ray node, or on a node of a cluster that is gone: this host
            here.append(f)
        elif node is None:
            freed.waiting.append(_leftover(f, ip))
        else:
            groups.setdefault(node, []).append({**f, "host": ip})
    _free_here(target, conv["conversion_id"], here, dry_run, freed)
    named = [f["path"] for f in files]
    if whole:  # every other live host looks for the conversion's files no row names
        covered = {ips.get(node) for node in groups}
        here = ray.util.get_node_ip_address()
        for ip, node in live.items():
            if ip in covered:
                continue
            if ip == here:  # this process's own host: no task needed
                for path, size in delete_rest(target.root, conv["conversion_id"], dry_run, named):
                    freed.add(ip, path, size)
            else:
                groups[node] = []
    if not groups:
        return freed
    timeout_s = settings().fetch_timeout_s if timeout_s is None else timeout_s
    tasks = {_delete_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
             .remote(target.root, conv["conversion_id"], [f["path"] for f in group], dry_run,
                     (named if dry_run else [f["path"] for f in group]) if whole else None): group
             for node, group in groups.items()}
    node_of = dict(zip(tasks, groups))
    ready, died, pending = wait_pinned(node_of, timeout_s)
    for ref in died:  # a node that died after its task was sent will not answer
        ray.cancel(ref, force=True)
        freed.waiting.extend(_leftover(f, f["host"]) for f in tasks[ref])
    for ref in pending:  # a host that does not answer (partitioned): its files wait
        ray.cancel(ref, force=True)
        log.warning("host %s did not answer within %.0fs; its %d files of conversion %s wait for `ftbridge gc`",
                    ips.get(node_of[ref], node_of[ref]), timeout_s, len(tasks[ref]), conv["conversion_id"])
        freed.waiting.extend(_leftover(f, f["host"]) for f in tasks[ref])
    for ref in ready:
        group = tasks[ref]
        try:
            host, sizes, rest = ray.get(ref)
        except Exception as exc:  # the node died while deleting: its files wait
            log.warning("deleting %d files on %s failed: %s", len(group), ips.get(node_of[ref], node_of[ref]), exc)
            freed.waiting.extend(_leftover(f, f["host"]) for f in group)
            continue
        for f, size in zip(group, sizes):
            freed.add(host, f["path"], size)
        for path, size in rest:
            freed.add(host, path, size)
    return freed


def _free_here(target: SpillTarget, conversion_id: str, files: list[dict], dry_run: bool, freed: Freed) -> None:
    """Files no live node can be asked about: deleted if this host holds them. One written on a Ray
    node and not found here may be on another host (its cluster gone): it waits for `gc`."""
    here = socket.gethostname()
    for f, size in zip(files, delete_local(target.root, conversion_id, [f["path"] for f in files], dry_run)):
        if size is not None or f.get("node_id") is None:
            freed.add(here, f["path"], size)
        else:
            freed.waiting.append(_leftover(f, f.get("host")))


def _leftover(f: dict, host: str | None) -> dict:
    return {"path": f["path"], "partition_id": f.get("partition_id"), "node_id": f.get("node_id"), "host": host}


def _free_shared(target: SpillTarget, conversion_id: str, files: list[dict], dry_run: bool, freed: Freed) -> None:
    """Files on a shared root: this process sees them all."""
    fs, _ = target.filesystem()
    dirs = set()
    for f in files:
        try:
            info = fs.get_file_info(f["path"])
            size = info.size or 0 if info.type == pafs.FileType.File else None
            if size is not None and not dry_run:
                fs.delete_file(f["path"])
            freed.add(SHARED, f["path"], size)
            dirs.add(f["path"].rsplit("/", 1)[0])
        except (OSError, pa.ArrowException) as exc:  # the store failed: try again at the next gc
            log.warning("could not delete %s: %s", f["path"], exc)
            freed.waiting.append(_leftover(f, SHARED))
    if dry_run:
        return
    for d in dirs:
        if d.rsplit("/", 1)[-1] != conversion_id:  # never delete anything but our own folder
            continue
        try:
            fs.delete_dir(d)
        except (OSError, pa.ArrowException):
            pass
