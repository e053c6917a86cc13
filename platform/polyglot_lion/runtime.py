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
            **kwargs,
        )
    return True


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
