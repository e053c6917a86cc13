"""MLflow: the tracking store checked before a job, runs that end with a status, what a training run leaves behind (``runs``: cost, artifacts, curves, a registered model version) and
the model registry and runs as tables people read (``registry``: list, show, promote, compare)."""

from .registry import RUN_METRICS, RUN_PARAMS, compare_runs, format_model, list_models, promote, show_model, table
from .runs import (
    CURVES,
    MLFLOW_HTTP_ENV,
    RunKilled,
    check_tracking,
    log_training_result,
    plot_training_curves,
    run_status,
)

__all__ = ["CURVES", "MLFLOW_HTTP_ENV", "RUN_METRICS", "RUN_PARAMS", "RunKilled", "check_tracking", "compare_runs",
           "format_model", "list_models", "log_training_result", "plot_training_curves", "promote", "run_status",
           "show_model", "table"]
