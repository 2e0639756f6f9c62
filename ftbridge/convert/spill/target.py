"""Where a conversion's spill files go: the spill root, per-node folders, safe paths, deletion."""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import pyarrow as pa
import pyarrow.fs as pafs

from ftbridge.common.config import settings
from ftbridge.common.errors import ConfigurationError

log = logging.getLogger(__name__)

SAFE_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")


# Query parameters of pyarrow.fs URIs that carry no secret; every other one is dropped
# before a URI reaches the catalog, a log line or an error message.
_PUBLIC_QUERY = frozenset({"region", "scheme", "endpoint_override", "allow_bucket_creation",
                           "allow_bucket_deletion", "background_writes", "default_metadata", "replication",
                           "buffer_size", "default_block_size", "anonymous", "force_virtual_addressing",
                           "tls_ca_file_path", "tls_verify_certificates", "retry_limit_seconds",
                           "default_bucket_location", "project_id", "enable_tls"})


def _split(uri: str) -> tuple[str, str, str, str]:
    """(scheme, userinfo, host-and-path, query) of a URI whose secret may hold an unescaped '/'."""
    scheme, rest = uri.split("://", 1)
    location, _, query = rest.partition("?")
    userinfo, at, hostpath = location.rpartition("@")
    return scheme, userinfo if at else "", hostpath, query


def redact_uri(uri: str) -> str:
    """`uri` without credentials: no `user:secret@`, no query parameter that may hold a secret.

    Local paths come back unchanged. A redacted object-store URI still opens: pyarrow takes
    the credentials from the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...).
    """
    if "://" not in uri:
        return uri
    scheme, _, hostpath, query = _split(uri)
    kept = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k in _PUBLIC_QUERY],
                     safe=":/,")
    return f"{scheme}://{hostpath}" + (f"?{kept}" if kept else "")


# Redacted root -> the root with credentials, for the conversions this process made.
_CREDENTIALED: dict[str, str] = {}


def default_spill_root() -> str:
    return settings().spill_root


def _safe_id(value: str, what: str) -> str:
    if not SAFE_ID.match(value or ""):
        raise ConfigurationError(f"{what} {value!r} is not a safe path component")
    return value


@dataclass(frozen=True)
class SpillTarget:
    """Where a conversion's files go. Node-local roots get a per-node folder."""

    root: str          # a local path, or a pyarrow.fs URI (s3://, gs://, hdfs://, file://)
    node_local: bool

    @staticmethod
    def resolve(spill_dir: str | None) -> SpillTarget:
        """None: node-local temp dir (fast, lost with the node); otherwise durable/shared."""
        if spill_dir is None:
            return SpillTarget(os.path.abspath(default_spill_root()), node_local=True)
        spill_dir = str(spill_dir)
        if "://" in spill_dir and not spill_dir.startswith("file://"):
            root = spill_dir.rstrip("/")
            if redact_uri(root) != root:  # credentials stay in this process's memory only
                _CREDENTIALED[redact_uri(root)] = root
            return SpillTarget(root, node_local=False)
        path = spill_dir[len("file://"):] if spill_dir.startswith("file://") else spill_dir
        return SpillTarget(os.path.abspath(os.path.expanduser(path)), node_local=False)

    @staticmethod
    def recorded(conv: dict) -> SpillTarget:
        """The target of a recorded conversion. Its root has no credentials: those given to this
        process for that root are used again, else pyarrow takes them from the environment."""
        return SpillTarget(_CREDENTIALED.get(conv["spill_root"], conv["spill_root"]), bool(conv["node_local"]))

    @property
    def display_root(self) -> str:
        """The root without credentials: what the catalog, logs and errors show."""
        return redact_uri(self.root)

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local:
            return pafs.LocalFileSystem(), self.root
        return pafs.FileSystem.from_uri(self.root)

    def conversion_dir(self, conversion_id: str, node_id: str | None) -> str:
        _, base = self.filesystem()
        parts = [base]
        if self.node_local:
            parts.append(_safe_id("unknown-node" if node_id is None else node_id, "node id"))
        parts.append(_safe_id(conversion_id, "conversion id"))
        return "/".join(p.rstrip("/") for p in parts)

    def partition_path(self, conversion_id: str, partition_id: int, node_id: str | None) -> str:
        path = f"{self.conversion_dir(conversion_id, node_id)}/part-{int(partition_id):05d}.arrow"
        if self.is_local and not os.path.realpath(path).startswith(os.path.realpath(self.root) + os.sep):
            raise ConfigurationError(f"spill path {path} escapes the spill root {self.display_root}")
        return path

    def check_writable(self) -> None:
        """Create the root (0700) and write a probe file; raise ConfigurationError if we cannot."""
        fs, base = self.filesystem()
        probe = f"{base.rstrip('/')}/.ftbridge-probe-{uuid.uuid4().hex}"
        try:
            if self.is_local:
                os.makedirs(base, mode=0o700, exist_ok=True)
            else:
                fs.create_dir(base, recursive=True)
            with fs.open_output_stream(probe) as out:
                out.write(b"ok")
            fs.delete_file(probe)
        except (OSError, pa.ArrowException) as exc:
            raise ConfigurationError(
                f"spill dir {self.display_root} is not writable: {_redact_text(str(exc), self.root)}. Pass "
                "spill_dir= a writable local path or pyarrow.fs URI, or set FTBRIDGE_SPILL_DIR.",
                spill_dir=self.display_root) from exc


def _redact_text(text: str, uri: str) -> str:
    """`text` with any credentials of `uri` replaced by ***."""
    if "://" not in uri:
        return text
    _, userinfo, _, query = _split(uri)
    secrets = [userinfo, *userinfo.split(":", 1)] + [v for k, v in parse_qsl(query) if k not in _PUBLIC_QUERY]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text.replace(uri, redact_uri(uri))


def delete_conversion_dirs(target: SpillTarget, conversion_id: str) -> None:
    """Remove a conversion's folders that this host can see (after a failed spill job)."""
    _safe_id(conversion_id, "conversion id")
    fs, base = target.filesystem()
    if target.is_local:
        dirs = [os.path.join(base, conversion_id)]
        if target.node_local and os.path.isdir(base):
            dirs = [os.path.join(base, node, conversion_id) for node in os.listdir(base)]
        for d in dirs:
            if os.path.isdir(d):
                shutil.rmtree(d, ignore_errors=True)
                if target.node_local:
                    rmdir_quietly(os.path.dirname(d))
        return
    try:
        fs.delete_dir(f"{base.rstrip('/')}/{conversion_id}")
    except (OSError, pa.ArrowException):
        pass


def rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)  # only when empty: a node folder that holds no conversion any more
    except OSError:
        pass


def ray_nodes_by_address(nodes: list[dict]) -> dict[str, str]:
    """{address: node id} of the alive Ray nodes, for files written on the host at an address.

    On a one-machine cluster (every alive node on one address) several nodes share the
    address and its files, and none is named: naming one would tie the files to it, when a
    read anywhere finds them. On a cluster of several hosts, a host can still run two nodes
    (Ray on Spark starts a lost worker node again wherever Spark has a free slot): the first
    by id is named, since only a node on that host can serve its files."""
    seen: dict[str, list[str]] = {}
    for n in nodes:
        if n.get("Alive") and n.get("NodeManagerAddress"):
            seen.setdefault(n["NodeManagerAddress"], []).append(n["NodeID"])
    if len(seen) == 1:
        return {address: ids[0] for address, ids in seen.items() if len(ids) == 1}
    return {address: min(ids) for address, ids in seen.items()}
