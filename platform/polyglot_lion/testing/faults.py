"""Fault injection for tests: a training worker that dies once, as a real fault would, to exercise Ray Train's
``FailureConfig`` restart and the resume from the last checkpoint (``train(inject_crash_at_step=...)``)."""

from __future__ import annotations

import os
import time

CRASH_MARKER = ".crash_injected"  # in the run folder once the crash happened: a restarted worker trains on


def maybe_crash(step: int, crash_at_step: int | None, marker_dir: str | None) -> None:
    """Kill this worker process once, right after ``step`` == ``crash_at_step`` (None: never)."""
    marker = marker_dir and os.path.join(marker_dir, CRASH_MARKER)
    if step == crash_at_step and not os.path.exists(marker):
        open(marker, "w").close()
        # Ray Train's controller learns of reported checkpoints by polling the workers; a crash within a poll of
        # the last report would restart from the one before. Die a little later, as real faults do.
        time.sleep(3)
        os._exit(1)
