"""Fault injection for tests: a training worker that dies once, as a real fault would, to exercise Ray Train's
``FailureConfig`` restart and the resume from the last checkpoint (``train(inject_crash_at_step=...)``)."""

from __future__ import annotations

import os
import time

from ..storage import resolve

CRASH_MARKER = ".crash_injected"  # in the run folder once the crash happened: a restarted worker trains on


def maybe_crash(step: int, crash_at_step: int | None, marker_dir: str | None) -> None:
    """Kill this worker process once, right after ``step`` == ``crash_at_step`` (None: never). ``marker_dir``: the
    run's location (a local folder or a bucket prefix), where the crash is remembered."""
    if step != crash_at_step or not marker_dir:
        return
    marker = resolve(marker_dir).join(CRASH_MARKER)
    if not marker.exists():
        marker.write_bytes(b"")
        # Ray Train's controller learns of reported checkpoints by polling the workers; a crash within a poll of
        # the last report would restart from the one before. Die a little later, as real faults do.
        time.sleep(3)
        os._exit(1)
