"""The training driver: base model, datasets, Ray Train trainer, MLflow run and model registration.

    polyglot-lion train --config jobs/configs/qwen3_asr/tiny_cpu.yaml data.store=store data.plan=plans/two-stage

Re-running the same ``run.name`` resumes from its latest checkpoint and stops at the same total step count;
the MLflow run of that name is continued, not duplicated. ``run.output_dir`` may be a bucket (``s3://bucket/runs``):
the run's files (config, tiny base model, checkpoints: Ray Train uploads them) then live there, and a resume reads
them back from it; this machine keeps only temporary copies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ..config import Config
from ..data.balance import check_plan_against_store, read_balanced, read_plan
from ..data.store import list_partitions, read_metadata
from ..folders import upload_folder
from ..model.loading import _refuse_original, checkpoint_format
from ..model.tiny import PRESETS, save_tiny_checkpoint
from ..runtime import init_ray, progress_bar, ray_job_submission_id
from ..storage import Location, check_location, ray_storage, resolve
from ..tracking import check_tracking, log_training_result, run_status
from .checkpoints import (
    checkpoint_folders,
    ray_checkpoint_uri,
    ray_storage_location,
    run_location,
    selected_checkpoint,
)
from .data import Featurize, featurize_batch, prompt_pieces, steps_for_epochs
from .loop import train_loop_per_worker
from .zero import check_deepspeed_config, deepspeed_config

MLFLOW_RUN_NAME_TAG = "polyglot_lion.run_name"


def prepare_base_model(cfg: Config, run: str | os.PathLike | Location) -> str:
    """The checkpoint training starts from: the configured folder, or the tiny model built once per run (in the
    run's location ``run``: built in a temporary folder and uploaded there)."""
    if cfg.model.source != "tiny":
        if os.path.isdir(cfg.model.source) and checkpoint_format(cfg.model.source) == "original":
            _refuse_original(cfg.model.source)
        # a local folder as an absolute path: Ray workers (the featurisers) do not share the driver's cwd
        return os.path.abspath(cfg.model.source) if os.path.isdir(cfg.model.source) else cfg.model.source
    base = resolve(run).join("base_model")
    if not base.join("config.json").exists():
        texts = read_metadata(cfg.data.store, "train", columns=["text"])["text"].to_pylist()
        encoder, decoder = PRESETS[cfg.model.tiny_preset]
        with tempfile.TemporaryDirectory(prefix="polyglot-lion-base-") as d:
            save_tiny_checkpoint(d, texts, seed=cfg.run.seed, vocab_size=cfg.model.tiny_vocab_size,
                                 encoder=encoder, decoder=decoder)
            # config.json last: a folder without it (an upload cut short) is built again
            config = Path(d, "config.json").read_bytes()
            os.remove(os.path.join(d, "config.json"))
            upload_folder(d, base)
            base.join("config.json").write_bytes(config)
    return str(base)


def resolve_epochs(cfg: Config) -> Config:
    """``train.epochs`` > 0: the config with ``train.max_steps`` set to the steps that many epochs of the plan
    make (``steps_for_epochs``), said on stdout; else the config as it is. Deterministic, so a resumed run
    resolves the same count."""
    if cfg.train.epochs <= 0:
        return cfg
    d, t = cfg.data, cfg.train
    durations = read_plan(d.plan).column("duration_s").to_pylist()
    steps = steps_for_epochs(durations, t.epochs, t.grad_accum, max(1, cfg.scaling.num_workers), d.bucket_window,
                             d.max_frames_per_batch, d.max_batch_size, d.fixed_batch_size, seed=cfg.run.seed)
    print(f"train.epochs={t.epochs:g}: {len(durations)} plan rows an epoch -> train.max_steps={steps} (was "
          f"{t.max_steps})", flush=True)
    return dataclasses.replace(cfg, train=dataclasses.replace(t, max_steps=steps))


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=os.path.dirname(__file__)).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def _mlflow_run(cfg: Config, run: Location) -> str:
    # heavy (MLflow, Ray): imported when a run starts, not when the CLI or a job script loads this module
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    # artifacts next to a SQLite store (not in whatever folder the job was started from)
    artifacts = None
    if cfg.tracking.uri.startswith("sqlite:///"):
        artifacts = Path(cfg.tracking.uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
        artifacts = artifacts.as_uri()
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
    found = client.search_runs([exp_id], f"tags.`{MLFLOW_RUN_NAME_TAG}` = '{cfg.run.name}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=cfg.run.name, tags={
        MLFLOW_RUN_NAME_TAG: cfg.run.name, "git_commit": _git_commit(),
        "ray_job_id": ray_job_submission_id(),
        "run_dir": str(run)})
    for k, v in cfg.flat().items():
        client.log_param(run.info.run_id, k, json.dumps(v) if isinstance(v, (list, dict)) else v)
    return run.info.run_id


def dev_sets(cfg: Config) -> tuple[list, int]:
    """The store's dev sets (``data.dev_split``) and how many utterances to take from each: as many from every
    set, ``data.dev_max_utterances`` in all (for the dev loss and the dev evaluation alike)."""
    parts = list_partitions(cfg.data.store, cfg.data.dev_split) if cfg.data.dev_split else []
    return parts, max(1, cfg.data.dev_max_utterances // max(1, len(parts)))


def build_datasets(cfg: Config, base_model_dir: str) -> dict:
    import ray  # heavy (Ray), as in _mlflow_run

    # Deterministic row order (resume replays it), and no per-operator CPU reservation on small nodes.
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.op_resource_reservation_enabled = False
    # The v2 Parquet reader adds a file-listing task that asks for a whole CPU; beside a training worker on
    # a 2-CPU node it never got one and the job hung. We pass explicit file lists, so the v1 reader suffices.
    ctx.use_datasource_v2 = False
    # Ray Data's downstream-capacity backpressure held the featuriser to one task while the trainer starved
    # (its big feature blocks count against a small object-store budget): training ran at a quarter speed.
    ctx.downstream_capacity_backpressure_ratio = None
    cols = ["id", "audio", "text", "language", "duration_s"]
    args = (base_model_dir, cfg.data.target_mode, prompt_pieces(base_model_dir))
    if cfg.data.featurize_actors:
        featurize = dict(fn=Featurize, fn_constructor_args=args, batch_format="pyarrow", batch_size=32, num_cpus=0.5,
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.data.featurize_actors))
    else:  # tasks: processes reused across jobs (the processor cached in each), no actor start-up per job
        featurize = dict(fn=featurize_batch, fn_args=args, batch_format="pyarrow", batch_size=32, num_cpus=0.5)
    out = {"train": read_balanced(cfg.data.store, cfg.data.plan, columns=cols, seed=cfg.run.seed,
                                       passes=cfg.data.plan_passes)
             .map_batches(**featurize)}
    # no dev set is featurised for a job that never computes a dev loss
    parts, each = dev_sets(cfg) if cfg.train.dev_every else ([], 0)
    if parts:
        # The same number of utterances from every dataset (the dev loss is about all languages, not the first
        # shard's); small, so featurised once up front and never competing with the train pipeline for CPUs.
        dev = [ray.data.read_parquet(sorted(p.files), filesystem=p.fs, columns=cols, num_cpus=0.25).limit(each)
               for p in parts]
        out["dev"] = (dev[0].union(*dev[1:]) if len(dev) > 1 else dev[0]).map_batches(**featurize).materialize()
    return out


class _ProgressBar:
    """A progress bar in this (driver) process for a run whose steps happen in Ray workers: the run's latest
    logged step and loss, read from its MLflow history every ``every_s`` seconds. For drivers that keep the
    workers' own progress lines out of their console (``init_ray(quiet=True)``, as the demo)."""

    def __init__(self, tracking_uri: str, run_id: str, max_steps: int, max_minutes: float = 0.0, every_s: float = 2.0,
                 progress=True):
        from mlflow.tracking import MlflowClient  # heavy (MLflow), as in _mlflow_run

        self.client, self.run_id, self.every_s = MlflowClient(tracking_uri=tracking_uri), run_id, every_s
        self.minutes = max_minutes  # a time budget: the bar counts its seconds, the step goes beside the loss
        total, unit = (round(max_minutes * 60), "s") if max_minutes else (max_steps, "step")
        self.bar = progress_bar(progress, total=total, desc="train", unit=unit, dynamic_ncols=True)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="train-progress", daemon=True)

    def _poll(self) -> None:
        history = self.client.get_metric_history(self.run_id, "loss")
        if history:
            last = max(history, key=lambda m: m.step)
            if self.minutes:
                spent = max(self.client.get_metric_history(self.run_id, "train_s"), key=lambda m: m.step).value
                self.bar.update(max(0, min(self.bar.total, round(spent)) - self.bar.n))
                self.bar.set_postfix(step=last.step, loss=f"{last.value:.4f}", refresh=True)
            else:
                self.bar.update(max(0, last.step - self.bar.n))
                self.bar.set_postfix(loss=f"{last.value:.4f}", refresh=True)

    def _watch(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self._poll()
            except Exception:  # a busy SQLite store, a server hiccup: try again at the next tick
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        try:
            self._poll()
        except Exception:
            pass
        self.bar.close()


def train(cfg: Config, inject_crash_at_step: int | None = None, progress: bool = False) -> dict:
    """Run (or resume) a training job; returns a summary with the MLflow run, checkpoint and model version.

    ``inject_crash_at_step`` (tests only) kills the worker once after that step, to exercise FailureConfig.
    ``progress``: a bar in this process from the run's MLflow history (``_ProgressBar``), for a driver whose
    console does not show the workers' own progress lines.
    """
    import ray  # heavy: only a training run needs it

    # checked before anything is written or Ray starts: the tracking store answers, the output location can be
    # written (a bucket that does not exist or denies access is named here), the plan fits the store
    check_tracking(cfg.tracking.uri)
    check_location(cfg.run.output_dir, write=True, what="run.output_dir")
    note = check_plan_against_store(cfg.data.store, cfg.data.plan, "train").get("note")
    if note:
        print(note, flush=True)
    if inject_crash_at_step is not None and not cfg.scaling.num_workers:
        raise ValueError("inject_crash_at_step needs scaling.num_workers >= 1 (local mode would kill this process)")
    ds_config = None
    if cfg.scaling.deepspeed_stage:
        if cfg.scaling.num_workers < 1:
            raise ValueError("scaling.deepspeed_stage needs scaling.num_workers >= 1 (DeepSpeed runs in Ray workers)")
        ds_config = deepspeed_config(cfg)
        check_deepspeed_config(ds_config)  # fails here, before Ray starts, if DeepSpeed rejects it
    run = run_location(cfg)
    run.mkdir()
    cfg = resolve_epochs(cfg)
    run.join("config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    base = prepare_base_model(cfg, run)
    run_id = _mlflow_run(cfg, run)
    # Ray first: its core installs a SIGTERM handler of its own at init, which would replace the run's handler
    # (the one that ends the MLflow run KILLED) had run_status installed it before
    started = init_ray()
    try:
        with run_status(cfg.tracking.uri, run_id):  # the run ends FINISHED, FAILED (with the error) or KILLED
            return _train(cfg, run, base, run_id, ds_config, inject_crash_at_step, progress, started)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _train(cfg: Config, run: Location, base: str, run_id: str, ds_config: dict | None,
           inject_crash_at_step: int | None, progress: bool, started: bool) -> dict:
    import mlflow  # heavy (MLflow, Ray), as in _mlflow_run
    import ray.train
    from ray.train.torch import TorchTrainer

    before = set(checkpoint_folders(cfg))  # a rerun with nothing left to train adds none
    # Ray Train's storage: a local folder, or a bucket with its filesystem (endpoint, keys), pickled to the workers
    storage_path, storage_filesystem = ray_storage(ray_storage_location(cfg))
    t0 = time.time()
    try:
        datasets = build_datasets(cfg, base)
        # the dev evaluation reads the store itself (as 'polyglot-lion evaluate'), from the worker's own folder
        eval_sets, eval_each = dev_sets(cfg) if cfg.train.dev_eval_every else ([], 0)
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg.to_dict(), "base_model_dir": base, "mlflow_run_id": run_id,
                               "has_dev": "dev" in datasets, "deepspeed": ds_config,
                               "plan_rows": read_plan(cfg.data.plan).num_rows,
                               "dev_eval_store": str(resolve(cfg.data.store)) if eval_sets else None,
                               "dev_eval_per_set": eval_each,
                               "inject_crash_at_step": inject_crash_at_step, "crash_marker_dir": str(run),
                               "local_checkpoint_dir": None if cfg.scaling.num_workers else str(run / "checkpoints")},
            scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                                   resources_per_worker={"CPU": cfg.scaling.cpus_per_worker,
                                                                         **cfg.scaling.worker_resources}
                                                   if cfg.scaling.num_workers else None),
            run_config=ray.train.RunConfig(
                name=cfg.run.name, storage_path=storage_path, storage_filesystem=storage_filesystem,
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=cfg.train.keep_checkpoints,  # with a score: the best K, and always the latest
                    **({} if cfg.train.select_by == "last" else
                       {"checkpoint_score_attribute": cfg.train.select_by, "checkpoint_score_order": "min"})),
                failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures)),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        )
        if progress:
            with _ProgressBar(cfg.tracking.uri, run_id, cfg.train.max_steps, cfg.train.max_minutes,
                              progress=progress):
                result = trainer.fit()
        else:
            result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    wall_h = (time.time() - t0) / 3600
    gpus = cfg.scaling.num_workers if cfg.scaling.use_gpu else 0
    mlflow.set_tracking_uri(cfg.tracking.uri)
    folders = checkpoint_folders(cfg)
    # local mode reports nothing when a rerun finds the run finished; Ray Train returns the run's latest then
    if not result.checkpoint:
        latest = folders[-1] if folders else None
    elif cfg.scaling.num_workers:
        latest = ray_checkpoint_uri(cfg, result.checkpoint)
    else:  # local mode reports the run folder's copy (keep_local)
        latest = str(run.join("checkpoints", os.path.basename(result.checkpoint.path)))
    return log_training_result(cfg, run_id, result, wall_h, gpus, latest_checkpoint=latest,
                               model_checkpoint=selected_checkpoint(cfg, result, latest),
                               trained=latest is not None and latest not in before)
