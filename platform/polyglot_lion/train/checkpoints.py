"""Checkpoints, in one place: what one holds, how a worker writes it, where a run keeps them, which are kept, and
which one is the run's model.

A checkpoint is a transformers folder that inference loads as is, plus what resuming needs: ``STATE_FILE`` (step,
data position, skipped counts, scores), ``OPTIM_FILE`` (AdamW and schedule; DeepSpeed's own states under
``DS_TAG`` instead) and ``METRICS_FILE`` (the metrics of its step, which ``train.select_by`` ranks). With
``scaling.num_workers`` >= 1 Ray Train keeps them in its storage path (``<output_dir>/_ray/<run>``, uploaded by Ray
Train, on a local disk or in a bucket); Train's local mode (0 workers) has no Ray storage, so the worker keeps them
in ``<run>/checkpoints/checkpoint_step_NNNNNNNN`` itself. Every folder here may be a location (``storage.py``):
a local path or ``s3://``/``gs://``; a bucket has no rename, so a local-mode checkpoint being written or deleted
holds a ``WRITING_MARKER`` file, and readers skip such folders.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import tempfile
from dataclasses import dataclass

import pyarrow.fs as pafs
import torch
import torch.distributed as dist

from ..config import Config
from ..folders import upload_folder
from ..storage import Location, resolve

STATE_FILE = "training_state.json"
METRICS_FILE = "metrics.json"  # the metrics of the checkpoint's step (train.select_by reads them)
OPTIM_FILE = "optimizer.pt"
DS_TAG = "deepspeed"  # sub-folder of a checkpoint with DeepSpeed's (partitioned) model and optimizer states
WRITING_MARKER = ".writing"  # in a local-mode checkpoint folder while it is written or deleted: not a checkpoint
RAY_STORAGE = "_ray"  # Ray Train's storage path, in the output folder: <output_dir>/_ray/<run name>/checkpoint_*


# --- reading a checkpoint -------------------------------------------------------------------------------------
def checkpoint_metrics(folder: str | Location) -> dict:
    """The metrics logged at a checkpoint's step (``metrics.json``, written with it; {} for older checkpoints)."""
    path = resolve(folder).join(METRICS_FILE)
    return json.loads(path.read_text()) if path.exists() else {}


def training_state(folder: str | Location) -> dict:
    """A checkpoint's training state (step, data position, ...; {} when it has none)."""
    state = resolve(folder).join(STATE_FILE)
    return json.loads(state.read_text()) if state.exists() else {}


# --- ranking: which to keep, which is best, whether to stop ------------------------------------------------------
def _ranked(candidates: list[tuple[str, dict]], metric: str) -> list[str]:
    """The folders of ``(folder, metrics)`` (oldest first), best first: lowest ``metric``, a tie to the later one,
    those without it (or NaN) last, latest first among them. Pure."""
    def key(i):
        value = candidates[i][1].get(metric)
        unscored = value is None or math.isnan(value)
        return (unscored, 0.0 if unscored else value, -i)

    return [candidates[i][0] for i in sorted(range(len(candidates)), key=key)]


def best_checkpoint(candidates: list[tuple[str, dict]], metric: str) -> str:
    """The folder among ``(folder, metrics)`` (oldest first) with the lowest ``metric``; ties and candidates
    without it go to the later one; ``metric`` 'last': the last. Pure."""
    return candidates[-1][0] if metric == "last" else _ranked(candidates, metric)[0]


def stale_checkpoints(candidates: list[tuple[str, dict]], keep: int, metric: str) -> list[str]:
    """The folders to delete among ``(folder, metrics)`` (oldest first): all but the last ``keep`` (``metric``
    'last'), or all but the best ``keep`` by ``metric`` and the latest (which a resume starts from), as Ray
    Train's ``CheckpointConfig(checkpoint_score_attribute=...)`` keeps them. Pure."""
    if metric == "last":
        return [f for f, _ in candidates[:-keep]]
    kept = {*_ranked(candidates, metric)[:keep], candidates[-1][0]}
    return [f for f, _ in candidates if f not in kept]


def checkpoints_since_best(scores: list[float], min_delta: float = 0.0) -> int:
    """How many checkpoints, counted back from the latest, have not improved ``train.select_by``'s metric on the
    best one before them (``train.early_stop_patience`` compares it). ``scores``: the metric at each checkpoint,
    oldest first; a score improves when it is lower than the best so far by more than ``min_delta`` (the first
    finite one always does, NaN never). Pure."""
    best, since = math.inf, 0
    for score in scores:
        if score < best - min_delta:  # False for NaN
            best, since = score, 0
        else:
            since += 1
    return since


def should_stop_early(scores: list[float], metrics: dict, patience: int, min_delta: float, world: int = 1,
                      group=None) -> bool:
    """At a checkpoint: have the last ``patience`` checkpoints not improved the metric? Rank 0 decides (it alone
    has the dev error rate) and tells the others over ``group``, so every rank stops at the same step. Adds
    ``checkpoints_since_best`` to ``metrics``."""
    since = checkpoints_since_best(scores, min_delta)
    flag = torch.tensor([float(since)], dtype=torch.float64)
    if world > 1:
        dist.broadcast(flag, src=0, group=group)
    metrics["checkpoints_since_best"] = int(flag.item())
    return metrics["checkpoints_since_best"] >= patience


# --- local mode: the run folder keeps them ---------------------------------------------------------------------
def local_checkpoints(local_dir: str | Location) -> list[str]:
    """The complete checkpoints a local-mode run kept in its folder (a location), oldest first: one being written
    or deleted (``WRITING_MARKER`` inside, or an older run's ``.partial`` copy) is not one."""
    root = resolve(local_dir)
    infos = root.fs.get_file_info(pafs.FileSelector(root.path, allow_not_found=True, recursive=True))
    busy = {posixpath.dirname(i.path) for i in infos if i.base_name == WRITING_MARKER}
    found = sorted(i.path for i in infos if i.type == pafs.FileType.Directory and posixpath.dirname(i.path) ==
                   root.path.rstrip("/") and i.base_name.startswith("checkpoint_step_")
                   and not i.base_name.endswith(".partial") and i.path not in busy)
    return [str(root.join(posixpath.basename(p))) for p in found]


def latest_local_checkpoint(local_dir: str | Location):
    """The newest complete checkpoint a local-mode run kept (None: start from scratch)."""
    import ray.train  # heavy (Ray); only a Train worker resumes, the driver reads folders without it

    done = local_checkpoints(local_dir)
    if not done:
        return None
    latest = resolve(done[-1])
    return ray.train.Checkpoint(latest.path, filesystem=latest.fs)


def _delete_checkpoint(folder: Location) -> None:
    """Delete a checkpoint folder so that no reader takes what is left of it for a checkpoint, should the
    deletion be cut short: the marker first, its files, then the rest."""
    folder.join(WRITING_MARKER).write_bytes(b"")
    for f in folder.files(recursive=True):
        if f.name != WRITING_MARKER:
            f.delete()
    folder.delete()


def keep_local(folder: str, local_dir: str | Location, step: int, keep: int, select_by: str) -> str:
    """Copy a written checkpoint ``folder`` (local) into the run's ``local_dir`` (a location) as step ``step``'s and
    delete the ones ``stale_checkpoints`` names; returns the kept copy's URI. The copy holds ``WRITING_MARKER``
    until it is complete: a crash mid-copy leaves no folder that looks like a checkpoint (a bucket has no rename)."""
    root = resolve(local_dir)
    kept = root.join(f"checkpoint_step_{step:08d}")
    for stale in (kept, root.join(kept.name + ".partial")):
        if stale.exists():
            _delete_checkpoint(stale)
    marker = kept.join(WRITING_MARKER)
    marker.write_bytes(b"")
    upload_folder(folder, kept)
    marker.delete()
    kept_so_far = [(c, checkpoint_metrics(c)) for c in local_checkpoints(root)]
    for old in stale_checkpoints(kept_so_far, keep, select_by):
        _delete_checkpoint(resolve(old))
    return str(kept)


# --- writing one (in the Train workers) -------------------------------------------------------------------------
def check_replicas_agree(params: list, group, step: int) -> None:
    """Under DDP every rank holds the same weights, and a checkpoint saves rank 0's copy: check that they agree
    (a float64 checksum of the trained weights, reduced over the ranks; one small CPU reduction per checkpoint)."""
    with torch.no_grad():
        mine = torch.stack([p.detach().double().sum() for p in params]).sum().cpu().reshape(1)
    lo, hi = mine.clone(), mine.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=group)
    if lo.item() != hi.item():
        raise RuntimeError(f"step {step}: the ranks' weights differ (checksums {lo.item()!r} to {hi.item()!r}), so "
                           "their gradients were not all-reduced alike; the checkpoint would hold one rank's copy")


@dataclass
class Checkpointer:
    """Writes a worker's checkpoints and reports them to Ray Train. ``core``: the unwrapped model; ``engine``:
    DeepSpeed's (None without it); ``local_dir``: Train's local mode (the run folder keeps them)."""
    core: object
    processor: object
    optimizer: object
    scheduler: object
    engine: object
    params: list
    rank: int
    world: int
    group: object
    local_dir: str | None
    keep: int
    select_by: str

    def save_and_report(self, state: dict, metrics: dict) -> None:
        """With DeepSpeed every rank writes its own partition files; Ray Train merges the ranks' folders into one
        checkpoint. Without it rank 0 writes the folder and the others report the metrics only."""
        import ray.train  # heavy (Ray); this runs in a Train worker only

        engine = self.engine
        if self.world > 1 and not engine:
            check_replicas_agree(self.params, self.group, state["step"])
        if self.rank != 0 and not engine:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            state_dict = None
            if engine:
                engine.save_checkpoint(os.path.join(d, DS_TAG), tag=DS_TAG)
                if engine.zero_optimization_stage() == 3:  # collective: gathers the sharded weights on rank 0
                    state_dict = engine._zero3_consolidated_16bit_state_dict()
            if self.rank == 0:
                self.core.save_pretrained(d, state_dict=state_dict)
                self.processor.save_pretrained(d)
                if not engine:
                    torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                               os.path.join(d, OPTIM_FILE))
                with open(os.path.join(d, STATE_FILE), "w") as f:
                    json.dump(state, f)
                with open(os.path.join(d, METRICS_FILE), "w") as f:
                    json.dump(metrics, f)
            if self.local_dir:  # local mode reports a folder as is: keep it in the run folder, the last K of them
                kept = resolve(keep_local(d, self.local_dir, state["step"], self.keep, self.select_by))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint(kept.path, filesystem=kept.fs))
            else:
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


# --- the run's checkpoints, after training (the driver) ----------------------------------------------------------
def run_location(cfg: Config) -> Location:
    """Where the run keeps its files: ``run.output_dir``/``run.name`` (a local folder or a bucket prefix)."""
    return resolve(cfg.run.output_dir).join(cfg.run.name)


def ray_storage_location(cfg: Config) -> Location:
    """Ray Train's storage path (``RunConfig(storage_path=...)``): ``<output_dir>/_ray``; it adds the run name."""
    return resolve(cfg.run.output_dir).join(RAY_STORAGE)


def ray_checkpoint_uri(cfg: Config, checkpoint) -> str:
    """The URI of a Ray Train checkpoint of this run (Ray gives a path inside its storage filesystem)."""
    root = ray_storage_location(cfg)
    return str(root.join(posixpath.relpath(checkpoint.path, root.path)))


def checkpoint_folders(cfg: Config) -> list[str]:
    """The run's checkpoint folders (URIs, or paths on a local disk; oldest first): Ray Train's in its storage path,
    or local mode's in the run folder."""
    if cfg.scaling.num_workers:  # Ray Train names them by time: checkpoint_YYYY-MM-DD_HH-MM-SS.ffffff
        root = ray_storage_location(cfg).join(cfg.run.name)
        infos = root.fs.get_file_info(pafs.FileSelector(root.path, allow_not_found=True))
        return [str(root.join(i.base_name)) for i in sorted(infos, key=lambda i: i.base_name)
                if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    return local_checkpoints(run_location(cfg).join("checkpoints"))


def selected_checkpoint(cfg: Config, result, latest: str | None) -> str | None:
    """The run's model: its ``latest`` checkpoint, or with ``train.select_by`` the kept one with the lowest metric
    (Ray Train's kept checkpoints and their metrics; in local mode the run folder's, with their metrics.json)."""
    if latest is None:
        return None
    if cfg.scaling.num_workers:
        kept = sorted(((ray_checkpoint_uri(cfg, c), m) for c, m in (result.best_checkpoints or [])),
                      key=lambda cm: cm[1].get("step", 0))
    else:
        kept = [(c, checkpoint_metrics(c)) for c in local_checkpoints(run_location(cfg).join("checkpoints"))]
    return best_checkpoint(kept, cfg.train.select_by) if kept else latest
