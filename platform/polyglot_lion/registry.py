"""The model registry's old import path: ``polyglot_lion.tracking.registry`` holds the code."""

from .tracking.registry import (  # noqa: F401
    RUN_METRICS,
    RUN_PARAMS,
    compare_runs,
    format_model,
    list_models,
    promote,
    show_model,
    table,
)
