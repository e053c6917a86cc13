"""Starting or joining Ray from a job's main(): never at import time."""

from __future__ import annotations

import logging
import os


def init_ray(num_cpus: int | None = None, object_store_mb: int | None = None, quiet: bool = False) -> bool:
    """Join the cluster named by RAY_ADDRESS (set inside ``ray job submit``) or start a local one.

    Returns True when this call started Ray (so the caller should shut it down), False when Ray was
    already initialised (tests share one session; jobs on a cluster join it).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict = {"log_to_driver": not quiet, "logging_level": logging.WARNING if quiet else logging.INFO}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **kwargs)
    else:
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=(object_store_mb * 1024**2) if object_store_mb else None,
            include_dashboard=False,
            _system_config=LOCAL_SYSTEM_CONFIG,
            **kwargs,
        )
    return True


#: Ray's settings for a session this process starts itself (a cluster's are its head node's).
#: Ray kills an idle worker process after 1 s once there are more than one per CPU, and the input pipeline's
#: fractional-CPU tasks run more than that at once: the next dataset of the session (a training job's, an
#: evaluation's, the next fine-tune of an experiment) then starts new processes that import transformers and load
#: the processor again, seconds each on a small machine. Kept idle for a minute, they are reused (BENCHMARKS.md).
#: An idle worker holds ~0.6 GB; past a minute idle, Ray's own rule applies again.
LOCAL_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def ray_job_submission_id() -> str:
    """The ``raysubmit_...`` id when running as a Ray job's entrypoint ('' otherwise)."""
    import json

    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for the entrypoint
    if raw:
        try:
            return str(json.loads(raw).get("metadata", {}).get("job_submission_id", ""))
        except (ValueError, AttributeError):
            return ""
    return os.environ.get("RAY_JOB_SUBMISSION_ID", "")


def progress_bar(progress, **kwargs):
    """A tqdm bar as ``progress`` asks: False (none), True (on stderr) or a text stream to draw it on (the demo's
    terminal, when its stderr goes to a log file)."""
    from tqdm import tqdm  # light, but only the callers that draw a bar need it

    return tqdm(disable=not progress, file=progress if hasattr(progress, "write") else None, **kwargs)
