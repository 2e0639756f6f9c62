"""The retry policies, in one place. Each is bounded, retries only what can pass, and logs."""

from __future__ import annotations

import logging

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from ftbridge.common.config import settings
from ftbridge.common.errors import CatalogUnavailableError

log = logging.getLogger("ftbridge.retry")


def _bounded(retry, multiplier: float, max_wait_s: float, bound_s: float, level: int) -> Retrying:
    """The one shape of every policy: jittered capped backoff, a time bound, a log line, reraise."""
    return Retrying(
        retry=retry,
        wait=wait_random_exponential(multiplier=multiplier, max=max_wait_s),
        stop=stop_after_delay(bound_s),
        before_sleep=before_sleep_log(log, level),
        reraise=True,
    )


def catalog_lock_retry(fn):
    """Call `fn`, retrying while the catalog file is locked by another process.

    Bounded by FTBRIDGE_CATALOG_LOCK_TIMEOUT_S (default 60 s); then the last
    CatalogUnavailableError propagates.
    """
    return _bounded(retry_if_exception_type(CatalogUnavailableError), 0.01, 0.25,
                    settings().catalog_lock_timeout_s, logging.DEBUG)(fn)


def is_missing_file(exc: BaseException) -> bool:
    """Whether an IO error (local, or from a pyarrow filesystem) says the file is not there."""
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc).lower()
    return "not found" in text or "no such file" in text or "does not exist" in text


def _transient_io(exc: BaseException) -> bool:
    """Network-ish IO errors worth another try; a missing file is not one of them."""
    if is_missing_file(exc):
        return False
    return isinstance(exc, OSError) or "arrow" in type(exc).__module__


def remote_io_retry(fn):
    """Call `fn` (IO on a remote spill store), retrying transient failures with capped backoff.

    Bounded by FTBRIDGE_REMOTE_IO_RETRY_S (default 30 s); then the last error propagates.
    """
    return _bounded(retry_if_exception(_transient_io), 0.2, 3.0, settings().remote_io_retry_s,
                    logging.WARNING)(fn)
