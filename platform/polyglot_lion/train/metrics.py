"""What a training run measures and says: the metrics of a log window, the dev loss and dev error rate, the
utterances dropped, one progress line per log, and the MLflow logging (rank 0)."""

from __future__ import annotations

import contextlib
import math
import resource
import time

import torch

from ..evaluation.evaluate import dev_metrics, evaluate
from ..inference.transcriber import Transcriber
from .data import SKIP_REASONS, SkippedRows, iter_micro_batches, synced


def progress_line(metrics: dict, max_steps: int, elapsed_s: float, steps_done: int) -> str:
    """One line of training progress for the job's log: step, share done, loss, lr, gradient norm, throughput
    and the time left at the pace of this run's steps so far (``steps_done`` of them in ``elapsed_s``)."""
    step = int(metrics["step"])
    left = (max_steps - step) * elapsed_s / steps_done if steps_done > 0 else float("nan")
    eta = "?" if math.isnan(left) else (f"{left / 3600:.1f} h" if left >= 3600 else
                                        f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f} s")
    line = (f"step {step}/{max_steps} ({100 * step / max(1, max_steps):.0f}%) loss {metrics['loss']:.4f} "
            f"lr {metrics['lr']:.2e} grad_norm {metrics['grad_norm']:.3f} {metrics['samples_per_s']:.1f} samples/s "
            f"{metrics['audio_s_per_s']:.0f} audio-s/s")
    if "dev_loss" in metrics:
        line += f" dev_loss {metrics['dev_loss']:.4f}"
    if "dev_capped_error_rate" in metrics:
        line += f" dev_error_rate {metrics['dev_capped_error_rate']:.1f}%"
    if metrics.get("skipped_utterances"):
        line += f" ({metrics['skipped_utterances']:.0f} utterances skipped)"
    return line + f", {eta} left"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Window:
    """What one log window adds up: samples, audio seconds, padding efficiency, audio fraction, micro-batches,
    the summed loss (on the device: read back only when logged) and the time spent waiting for input."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """A new window, from now."""
        self.samples, self.audio_s, self.eff, self.audio_frac, self.micro = 0, 0.0, 0.0, 0.0, 0
        self.loss, self.wait_s, self.t0 = 0.0, 0.0, time.time()

    def timed(self, batches):
        """The micro-batches, adding the time the loop waits for each (Ray Data, shuffle, bucketing, collate)
        to the window as it is then (``reset`` keeps the object)."""
        while True:
            t = time.time()
            item = next(batches, None)
            if item is None:
                return
            self.wait_s += time.time() - t
            yield item

    def add(self, batch: dict, n: int, loss: torch.Tensor) -> None:
        self.samples += n
        self.audio_s += batch["input_features_mask"].sum().item() / 100.0
        self.eff += batch["padding_efficiency"]
        self.audio_frac += batch["audio_fraction"]
        self.micro += 1
        self.loss += loss.detach()

    def metrics(self, step: int, epoch: float, lr: float, grad_norm, world: int, grad_accum: int,
                device: torch.device) -> dict:
        elapsed = max(time.time() - self.t0, 1e-9)
        return {
            "step": step, "loss": float(self.loss) / max(1, self.micro), "epoch": epoch,
            "lr": lr, "grad_norm": float(grad_norm),
            "samples_per_s": self.samples * world / elapsed,
            "steps_per_s": self.micro / grad_accum / elapsed,
            "audio_s_per_s": self.audio_s * world / elapsed,
            "padding_efficiency": self.eff / max(1, self.micro),
            "audio_fraction": self.audio_frac / max(1, self.micro),
            "peak_memory_mb": peak_memory_mb(device),
            # the share of the window spent waiting for input: > ~0.05 means the input is the limit
            "input_wait_frac": self.wait_s / elapsed,
        }


def skipped_counts(this_read: SkippedRows, before: dict, world: int = 1, group=None) -> dict:
    """Utterances dropped so far in the run, all ranks': ``before`` (the reads before this one, all ranks) plus
    this read's, by reason. A collective: every rank calls it at the same steps and read ends."""
    t = torch.tensor([this_read.by_reason[r] for r in SKIP_REASONS], dtype=torch.float64)
    if world > 1:
        torch.distributed.all_reduce(t, group=group)
    return {r: before.get(r, 0) + int(n) for r, n in zip(SKIP_REASONS, t.tolist()) if before.get(r, 0) + n}


def skipped_metrics(dropped: dict) -> dict:
    """The metrics of ``skipped_counts``: utterances that could not be featurised (dropped), in all and by reason."""
    return {"skipped_utterances": sum(dropped.values()), **{f"skipped_{reason}": n for reason, n in dropped.items()}}


@torch.no_grad()
def dev_loss(model, forward, dev_shard, pad_id: int, data, world: int = 1, group=None) -> tuple[float, int]:
    """(mean dev loss per micro-batch, dev utterances that could not be featurised), all ranks. The dev set is
    not split over the ranks (``DataConfig(datasets_to_split=["train"])``): every rank reads all of it, in the
    same order, so its drops are counted once, not summed over the ranks (they were: 2 workers reported each
    unreadable dev utterance twice). ``forward``: a micro-batch's loss; ``data``: the config's data section."""
    model.eval()
    total, n = 0.0, 0
    skipped = SkippedRows("dev")
    for batch, _ in synced(iter_micro_batches(
            skipped.filter(dev_shard.iter_rows()), pad_id, seed=0, window=data.bucket_window,
            max_frames=data.max_frames_per_batch, max_batch_size=data.max_batch_size), world, group):
        total = total + forward(batch).detach()  # read back once, after the loop
        n += 1
    model.train()
    t = torch.tensor([float(total), n], dtype=torch.float64)
    if world > 1:
        torch.distributed.all_reduce(t, group=group)
    return float(t[0] / max(t[1], 1)), skipped.total


def dev_eval(model, core, processor, step: int, store: str, split: str, per_set: int, device: torch.device,
             autocast: bool, compiled: bool) -> dict:
    """The dev split transcribed by the model being trained (``core``, unwrapped) and scored by ``evaluate`` (the
    code of ``polyglot-lion evaluate --split dev``: greedy, WER or CER per dev set): on rank 0 only, while the
    other ranks wait at their next collective. Compiled layers run eagerly here (no recompiles or CUDA-graph
    recordings for generation's shapes)."""
    t0 = time.time()
    eager = torch.compiler.set_stance("force_eager") if compiled else contextlib.nullcontext()
    try:
        with eager, torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            res = evaluate(f"step {step}", store, split=split, max_utterances=per_set,
                           transcriber=Transcriber(core, processor), log_to_mlflow=False, progress=False)
    finally:
        model.train()
    return {**dev_metrics(res), "dev_eval_s": time.time() - t0}


class DevChecks:
    """A run's dev loss (every ``train.dev_every`` steps and at the last, on all ranks: a collective) and dev
    evaluation (every ``train.dev_eval_every`` steps and at the last, on rank 0; ``eval_store`` None: never).
    ``model`` is the one that trains (maybe wrapped), ``core`` the model inside, ``forward`` a micro-batch's loss."""

    def __init__(self, model, core, processor, forward, dev_shard, cfg, eval_store: str | None, eval_per_set: int,
                 device: torch.device, autocast: bool, rank: int = 0, world: int = 1, group=None):
        self.model, self.core, self.processor, self.forward, self.dev_shard = model, core, processor, forward, dev_shard
        self.cfg, self.eval_store, self.eval_per_set = cfg, eval_store, eval_per_set
        self.device, self.autocast, self.rank, self.world, self.group = device, autocast, rank, world, group

    def loss_due(self, step: int, last: bool) -> bool:
        every = self.cfg.train.dev_every
        return bool(self.dev_shard is not None and every and (step % every == 0 or last))

    def eval_due(self, step: int, last: bool) -> bool:
        every = self.cfg.train.dev_eval_every
        return bool(self.eval_store and every and (step % every == 0 or last))

    def due(self, step: int, last: bool) -> bool:
        return self.loss_due(step, last) or self.eval_due(step, last)

    def measure(self, step: int, last: bool) -> dict:
        """The dev metrics due at ``step``: ``dev_loss`` (and ``dev_skipped_utterances``), the evaluation's."""
        out = {}
        if self.loss_due(step, last):
            out["dev_loss"], skipped = dev_loss(self.model, self.forward, self.dev_shard,
                                                self.processor.tokenizer.pad_token_id, self.cfg.data, self.world,
                                                self.group)
            if skipped:
                out["dev_skipped_utterances"] = skipped
        if self.eval_due(step, last) and self.rank == 0:
            out.update(dev_eval(self.model, self.core, self.processor, step, self.eval_store, self.cfg.data.dev_split,
                                self.eval_per_set, self.device, self.autocast, self.cfg.model.compile))
        return out


class MlflowLog:
    """Logs a step's metrics to the run's MLflow run from rank 0 (``run_id`` None: logs nothing)."""

    def __init__(self, tracking_uri: str, run_id: str | None):
        self.run_id, self.client = run_id, None
        if run_id:
            from mlflow.tracking import MlflowClient  # heavy (MLflow); only rank 0 of a tracked run needs it

            self.client = MlflowClient(tracking_uri=tracking_uri)

    def __call__(self, metrics: dict) -> None:
        if self.client is not None:
            from mlflow.entities import Metric  # heavy (MLflow), as above

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[
                Metric(k, float(v), now, int(metrics["step"])) for k, v in metrics.items() if k != "step"])


def stopped_message(step: int, tr) -> str:
    """What the log says when a run that ``train.early_stop_patience`` ended is started again."""
    return (f"this run stopped early at step {step} ({tr.select_by} not improved for {tr.early_stop_patience} "
            "checkpoints): nothing left to train; a larger train.early_stop_patience continues it")


def stop_message(step: int, tr, metrics: dict, scores: list[float]) -> str:
    """What the log says when ``train.early_stop_patience`` ends the run at ``step``."""
    best = min((s for s in scores if not math.isnan(s)), default=math.nan)
    return (f"stopping early at step {step}: {tr.select_by} has not improved for {metrics['checkpoints_since_best']} "
            f"checkpoints (train.early_stop_patience={tr.early_stop_patience}, early_stop_min_delta="
            f"{tr.early_stop_min_delta}; best {best:.4g})")
