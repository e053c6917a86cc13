"""MLflow: the tracking server checked before a job starts, runs that always end with a status, and what a
finished training run leaves behind (cost, artifacts, training curves, a registered model version)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import tempfile
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from ..data.balance import plot_balance
from ..folders import local_copy
from ..storage import resolve
from ..train.checkpoints import checkpoint_metrics, training_state

# MLflow's own HTTP retries, bounded for a job (its defaults: 7 retries with backoff, 120 s timeout each: minutes
# before a vanished server is reported)
MLFLOW_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """One reachability check of the tracking store, before a job writes anything or starts Ray: an HTTP server
    must answer (any HTTP status: it is there), a SQLite file's folder must exist. Raises ValueError naming the
    URI. Also bounds MLflow's own HTTP retries for this process and the Ray workers it starts
    (MLFLOW_HTTP_ENV, unless already set)."""
    import urllib.error
    import urllib.request

    for k, v in MLFLOW_HTTP_ENV.items():
        os.environ.setdefault(k, v)
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ValueError(f"tracking.uri {uri}: the MLflow tracking server did not answer within {timeout_s:g} s "
                             f"({reason}); start it (mlflow server ...) or use a local store, e.g. "
                             f"tracking.uri=sqlite:///mlflow.db") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).resolve().parent
        if not folder.is_dir():
            raise ValueError(f"tracking.uri {uri}: folder {folder} does not exist (the SQLite file is created, "
                             f"its folder is not)")


class RunKilled(SystemExit):
    """SIGTERM reached a job with an open MLflow run: the run ends KILLED and the process exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def run_status(tracking_uri: str, run_id: str):
    """Hold an MLflow run open for a block, then end it with its end time: FINISHED when the block returns, KILLED
    on Ctrl-C or SIGTERM (a handler turns SIGTERM into RunKilled), FAILED on any other exception, with the error
    as the run's ``error`` tag and its traceback as ``error.txt``. The exception goes on. A run left open by an
    exit that skips the block's end (``sys.exit`` in a callback) is ended FAILED at interpreter exit. A resumed
    run is RUNNING again inside the block."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.update_run(run_id, status="RUNNING")
    ended = False

    def end(status: str, error: BaseException | None = None) -> None:
        nonlocal ended
        if ended:
            return
        ended = True
        if error is not None:
            client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:4000])
            client.log_text(run_id, "".join(traceback.format_exception(error)), "error.txt")
        client.set_terminated(run_id, status)

    def at_exit() -> None:
        try:
            end("FAILED", RuntimeError("the process exited with the run still open"))
        except Exception:
            pass

    def on_sigterm(signum, frame):
        raise RunKilled(signum)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    atexit.register(at_exit)
    try:
        yield run_id
    except (KeyboardInterrupt, RunKilled) as e:
        end("KILLED", e)
        raise
    except BaseException as e:
        end("FAILED", e)
        raise
    else:
        end("FINISHED")
    finally:
        atexit.unregister(at_exit)
        if main:
            signal.signal(signal.SIGTERM, previous)


def log_training_result(cfg, run_id: str, result, wall_hours: float, gpus: int, latest_checkpoint: str | None,
                        model_checkpoint: str | None = None, trained: bool = True) -> dict:
    """Log cost, config, balance summary/plot, training curves and the run's model (``model_checkpoint``: the
    checkpoint ``train.select_by`` chose; default ``latest_checkpoint``); register it as a new model version. The
    result has both: ``checkpoint`` (the model) and ``latest_checkpoint`` (where a resume starts).

    Wall and GPU hours (and the cost) add up over the calls that trained the run (a resume adds its own time).
    ``trained`` False (a rerun that found the run finished): cost, model and version are the run's as they were;
    nothing is logged or registered again (``already_finished`` in the result)."""
    from mlflow.tracking import MlflowClient  # heavy (MLflow): imported when a run is logged

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    so_far = client.get_run(run_id).data.metrics  # the calls before this one
    model = model_checkpoint or latest_checkpoint
    out = {"mlflow_run_id": run_id, "tracking_uri": cfg.tracking.uri, "checkpoint": model,
           "latest_checkpoint": latest_checkpoint,
           "metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))},
           "wall_hours": so_far.get("wall_hours", 0.0) + (wall_hours if trained else 0.0),
           "wall_hours_this_call": wall_hours,
           "gpu_hours": so_far.get("gpu_hours", 0.0) + (wall_hours * gpus if trained else 0.0),
           "model_version": None, "model_step": training_state(model).get("step") if model else None}
    latest_state = training_state(latest_checkpoint) if latest_checkpoint else {}
    if latest_state.get("stopped_early"):  # train.early_stop_patience ended the run
        out["stopped_early_at_step"] = latest_state["step"]
    if cfg.train.max_minutes and latest_state.get("train_s", 0.0) >= cfg.train.max_minutes * 60:
        out["out_of_time_at_step"] = latest_state["step"]  # train.max_minutes ended the run
    if not trained:  # the run's model and version as they were
        out["already_finished"] = True
        out["metrics"] = out["metrics"] or (checkpoint_metrics(latest_checkpoint) if latest_checkpoint else {})
        mine = [v for v in client.search_model_versions(f"run_id='{run_id}'")
                if v.name == cfg.tracking.registered_model]
        if mine:
            mv = max(mine, key=lambda v: int(v.version))
            out["model_version"] = {"name": mv.name, "version": mv.version, "source": mv.source}
        return out
    client.log_metric(run_id, "wall_hours", out["wall_hours"])
    client.log_metric(run_id, "gpu_hours", out["gpu_hours"])
    client.log_metric(run_id, "estimated_cost_usd", out["gpu_hours"] * cfg.tracking.gpu_hour_usd)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        client.log_artifact(run_id, os.path.join(d, "config.json"))
        summary = resolve(cfg.data.plan).join("summary.json")  # the plan may be in a bucket
        if summary.exists():
            Path(d, "summary.json").write_bytes(summary.read_bytes())
            client.log_artifact(run_id, os.path.join(d, "summary.json"), "balance")
            client.log_artifact(run_id, plot_balance(os.path.join(d, "summary.json"), os.path.join(d, "balance.png")),
                                "balance")
        curves = plot_training_curves(client, run_id, os.path.join(d, "training_curves.png"))
        if curves:
            client.log_artifact(run_id, curves, "plots")
    if model is None:
        return out
    for key in ("stopped_early_at_step", "out_of_time_at_step"):
        if key in out:
            client.set_tag(run_id, key, str(out[key]))
    if out["model_step"] is not None:
        # the step of the logged, registered model (train.select_by chose it)
        client.log_metric(run_id, "model_step", out["model_step"], step=out["model_step"])
    with local_copy(model) as folder:  # a checkpoint in a bucket: through a temporary copy
        client.log_artifacts(run_id, folder, "model")
    if cfg.tracking.registered_model:
        from mlflow.exceptions import MlflowException  # heavy (MLflow), as above

        try:
            client.create_registered_model(cfg.tracking.registered_model)
        except MlflowException:
            pass  # already registered
        source = f"{client.get_run(run_id).info.artifact_uri}/model"
        mv = client.create_model_version(cfg.tracking.registered_model, source, run_id)
        out["model_version"] = {"name": cfg.tracking.registered_model, "version": mv.version, "source": source}
    return out


CURVES = (("loss", "dev_loss"), ("lr",), ("grad_norm",), ("audio_s_per_s",),
          ("dev_capped_error_rate", *(f"dev_capped_error_rate_{lang}" for lang in ("en", "zh", "ta", "ms"))))


def plot_training_curves(client, run_id: str, out_png: str) -> str | None:
    """Loss and dev loss, learning rate, gradient norm, throughput and (when the run evaluated its dev split) the
    dev error rates against the step, from the run's metric history (a resumed run's whole history); a panel
    only where something was logged; None when nothing was."""
    history = {k: sorted(((m.step, m.value) for m in client.get_metric_history(run_id, k)))
               for keys in CURVES for k in keys}
    if not history["loss"]:
        return None
    import matplotlib  # heavy: only a run with a history plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [keys for keys in CURVES if any(history[k] for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    for ax, keys in zip(axes, panels):
        for k in keys:
            if history[k]:
                steps, values = zip(*history[k])
                label = k
                if k.startswith("dev_capped_error_rate"):  # the mean, or the language's code
                    label = "mean" if k == "dev_capped_error_rate" else k.rsplit("_", 1)[1]
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label,
                        lw=2 if label == "mean" else 1)
        ax.set_xlabel("step")
        title = " / ".join(keys)
        if keys[0] == "dev_capped_error_rate":
            title = "dev error rate % (WER, CER zh; capped at 100)"
            ax.set_ylim(0, 105)
        ax.set_title(title, fontsize=9)
        if sum(bool(history[k]) for k in keys) > 1:
            ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.suptitle(f"training run {run_id[:8]}")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
