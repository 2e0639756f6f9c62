"""Reuse by plan: a conversion of the same deterministic plan over unchanged input files is
served again instead of being spilled again (`from_spark_recoverable(df, reuse=True)`).

A conversion's data is identified by its reuse key: the hash of its analyzed plan (expression
ids left out, they differ between sessions) and the name, size and modification time of every
input file. Plans that are not deterministic, or whose data the plan does not identify
(in-memory rows, RDDs, non-file sources), are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from ftbridge.adapters import spark as spark_adapter
from ftbridge.common import foreign
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog

log = logging.getLogger(__name__)

_EXPR_ID = re.compile(r"#\d+L?\b")


def reuse_key(df) -> tuple[str | None, str]:
    """`df`'s reuse key (JSON), or None and why it has none."""
    try:
        deterministic, text, unknown, files = spark_adapter.plan_inputs(df)
    except Exception as exc:  # Py4J: a plan this Spark cannot describe; never block the conversion on it
        return None, f"its plan could not be read ({foreign.first_line(exc, 200)})"
    if not deterministic:
        return None, "its plan is not deterministic (rand(), uuid(), ...)"
    if unknown:
        return None, (f"its data comes from {', '.join(sorted(set(unknown)))}, which neither the plan nor input "
                      "files identify (in-memory rows, an RDD, a non-file source)")
    stats, why = _stat(files)
    if stats is None:
        return None, why
    plan = hashlib.sha256(_EXPR_ID.sub("#", text).encode()).hexdigest()
    return json.dumps({"plan": plan, "files": stats}, separators=(",", ":")), ""


def _stat(files: list[str]) -> tuple[list | None, str]:
    """[[name, size, mtime_ns], ...] of the input files, or None and which one could not be seen."""
    out = []
    for uri in files:
        try:
            parts = urlsplit(uri)
            if parts.scheme in ("", "file"):
                fs, path = pafs.LocalFileSystem(), unquote(parts.path)
            else:
                fs, path = pafs.FileSystem.from_uri(uri.replace("s3a://", "s3://", 1))
            info = fs.get_file_info(path)
        except Exception as exc:  # an unknown scheme or an unreachable store: no key, convert as usual
            return None, f"its input file {uri} could not be looked at ({foreign.first_line(exc, 200)})"
        if info.type != pafs.FileType.File:
            return None, f"its input file {uri} is not there"
        out.append([uri, info.size, info.mtime_ns])
    return out, ""


def find(catalog: Catalog, key: str, target: SpillTarget, spill_format: str,
         num_partitions: int) -> tuple[tuple[dict, list[dict]] | None, str]:
    """The newest active conversion recorded with `key` whose files can serve this conversion
    (same spill root, file format and partitioning), or None and why. Its files that are missing
    or bad are rebuilt by this session's Spark when read, as for any conversion of this session."""
    want = json.loads(key)
    with catalog.read() as con:
        same_plan = [c for c in queries.reusable(con) if json.loads(c["reuse_key"])["plan"] == want["plan"]]
    if not same_plan:
        return None, "no active conversion of the same plan is recorded"
    why = ""
    for conv in same_plan:
        why = _differs(conv, want, target, spill_format, num_partitions)
        if not why:
            return catalog.load(conv["conversion_id"]), ""
    return None, why


def _differs(conv: dict, want: dict, target: SpillTarget, spill_format: str, num_partitions: int) -> str:
    """Why the recorded conversion `conv` of the same plan cannot serve this one ("" if it can)."""
    cid = conv["conversion_id"][:12]
    had = {name: (size, mtime) for name, size, mtime in json.loads(conv["reuse_key"])["files"]}
    now = {name: (size, mtime) for name, size, mtime in want["files"]}
    for name in sorted(set(had) | set(now)):
        if name not in had:
            return f"input file {name} is new since conversion {cid}"
        if name not in now:
            return f"input file {name} of conversion {cid} is gone"
        if had[name] != now[name]:
            return (f"input file {name} changed since conversion {cid} (size {had[name][0]} -> {now[name][0]}, "
                    f"modified {had[name][1]} -> {now[name][1]} ns)")
    if conv["spill_root"] != target.display_root:
        return f"conversion {cid} spilled to {conv['spill_root']}, not {target.display_root}"
    if conv.get("spill_format") != spill_format:
        return f"conversion {cid} was written with other session settings (time zone, Arrow batch size or types)"
    if conv["num_partitions"] != num_partitions:
        return f"Spark splits the plan into {num_partitions} partitions now, {conv['num_partitions']} for {cid}"
    return ""
