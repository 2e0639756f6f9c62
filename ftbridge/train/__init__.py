"""Training on recoverable data: resumable iteration, and runs in the lineage.

Stable names: `resumable` and `ResumableSource` (in the training loop / on the driver),
`RunRecorder` (a Ray Train callback for trainers built by hand), `POSITION_FILE`.
"""

from __future__ import annotations

from ftbridge.train.recorder import run_recorder_class
from ftbridge.train.resume import POSITION_FILE, Resumable, ResumableSource, resumable

__all__ = ["POSITION_FILE", "Resumable", "ResumableSource", "RunRecorder", "resumable"]


def __getattr__(name: str):
    if name == "RunRecorder":  # its base class exists only once Ray Train v2 is on
        return run_recorder_class()
    raise AttributeError(f"module 'ftbridge.train' has no attribute {name!r}")
