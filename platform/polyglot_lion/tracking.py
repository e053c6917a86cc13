"""MLflow: what a finished training run leaves behind (cost, artifacts, a registered model version)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def log_training_result(cfg, run_id: str, result, wall_hours: float, gpus: int) -> dict:
    """Log cost, config, balance summary/plot, training curves and the final checkpoint; register it as a new
    model version."""
    from mlflow.tracking import MlflowClient

    from .data.balance import plot_balance

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    gpu_hours = wall_hours * gpus
    client.log_metric(run_id, "wall_hours", wall_hours)
    client.log_metric(run_id, "gpu_hours", gpu_hours)
    client.log_metric(run_id, "estimated_cost_usd", gpu_hours * cfg.tracking.gpu_hour_usd)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        client.log_artifact(run_id, os.path.join(d, "config.json"))
        summary = Path(cfg.data.plan) / "summary.json"
        if summary.exists():
            client.log_artifact(run_id, str(summary), "balance")
            client.log_artifact(run_id, plot_balance(str(summary), os.path.join(d, "balance.png")), "balance")
        curves = plot_training_curves(client, run_id, os.path.join(d, "training_curves.png"))
        if curves:
            client.log_artifact(run_id, curves, "plots")
    ckpt = result.checkpoint
    out = {"mlflow_run_id": run_id, "tracking_uri": cfg.tracking.uri, "checkpoint": ckpt.path if ckpt else None,
           "metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))},
           "gpu_hours": gpu_hours, "model_version": None}
    if ckpt is None:
        return out
    client.log_artifacts(run_id, ckpt.path, "model")
    if cfg.tracking.registered_model:
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(cfg.tracking.registered_model)
        except MlflowException:
            pass  # already registered
        source = f"{client.get_run(run_id).info.artifact_uri}/model"
        mv = client.create_model_version(cfg.tracking.registered_model, source, run_id)
        out["model_version"] = {"name": cfg.tracking.registered_model, "version": mv.version, "source": source}
    return out


CURVES = (("loss", "dev_loss"), ("lr",), ("grad_norm",), ("audio_s_per_s",))


def plot_training_curves(client, run_id: str, out_png: str) -> str | None:
    """Loss and dev loss, learning rate, gradient norm and throughput against the step, from the run's metric
    history (a resumed run's whole history); None when nothing was logged."""
    history = {k: sorted(((m.step, m.value) for m in client.get_metric_history(run_id, k)))
               for keys in CURVES for k in keys}
    if not history["loss"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, keys in zip(axes, CURVES):
        for k in keys:
            if history[k]:
                steps, values = zip(*history[k])
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=k)
        ax.set_xlabel("step")
        ax.set_title(" / ".join(keys))
        if len(keys) > 1:
            ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.suptitle(f"training run {run_id[:8]}")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
