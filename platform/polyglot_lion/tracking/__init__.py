"""MLflow: what a training run leaves behind (``runs``: cost, artifacts, curves, a registered model version) and
the model registry and runs as tables people read (``registry``: list, show, promote, compare)."""

from .registry import RUN_METRICS, RUN_PARAMS, compare_runs, format_model, list_models, promote, show_model, table
from .runs import CURVES, log_training_result, plot_training_curves

__all__ = ["CURVES", "RUN_METRICS", "RUN_PARAMS", "compare_runs", "format_model", "list_models",
           "log_training_result", "plot_training_curves", "promote", "show_model", "table"]
