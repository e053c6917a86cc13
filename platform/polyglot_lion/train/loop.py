"""The training loop, top to bottom: one function that each Ray Train worker runs.

data -> model -> optimizer and schedule -> resume -> steps (accumulate, clip, step, log, dev loss and dev error
rate) -> checkpoint.
The driver (``run.py``) builds the datasets and the base model; this file holds no Ray Data or MLflow set-up.

Three ways to run the same steps: one process (CPU or one GPU), DDP across Ray workers, or DeepSpeed ZeRO-2/3
(``deepspeed.initialize`` wraps our AdamW and schedule, and then owns accumulation, clipping and bf16).
Each backward pass is a collective when there are several ranks, so every rank runs the same number of
micro-batches per read of the dataset: the read ends for all as soon as one rank's shard runs out. One read is
``data.plan_passes`` epochs of the plan (``read_balanced``); each read restarts the Ray Data pipeline, and
``ShardReads`` starts the next read in the background while the current one trains (``data.read_ahead_rows``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import resource
import shutil
import tempfile
import time
import warnings

import torch

from ..config import build_config
from ..model.efficiency import (
    MasterWeightAdamW,
    answer_loss,
    compile_layers,
    keep_grad_buffers,
    use_channels_last_conv,
)
from ..model.encoder_attention import use_batched_encoder_attention
from ..model.host_layout import host_inputs, to_device, use_host_layout
from .data import SKIP_REASONS, ShardReads, SkippedRows, expand_repeats, iter_micro_batches, shuffle_rows

STATE_FILE = "training_state.json"
METRICS_FILE = "metrics.json"  # the metrics of the checkpoint's step (train.select_by reads them)
OPTIM_FILE = "optimizer.pt"
DS_TAG = "deepspeed"  # sub-folder of a checkpoint with DeepSpeed's (partitioned) model and optimizer states
CRASH_MARKER = ".crash_injected"


def warmup_cosine(max_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


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


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _local_checkpoints(local_dir: str) -> list[str]:
    """The complete checkpoints a local-mode run kept in its folder, oldest first (a copy in progress is not one)."""
    return sorted(d for d in glob.glob(os.path.join(local_dir, "checkpoint_step_*")) if not d.endswith(".partial"))


def checkpoint_metrics(folder: str) -> dict:
    """The metrics logged at a checkpoint's step (``metrics.json``, written with it; {} for older checkpoints)."""
    path = os.path.join(folder, METRICS_FILE)
    return json.loads(open(path).read()) if os.path.exists(path) else {}


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


def _latest_local_checkpoint(local_dir: str):
    """The newest complete checkpoint a local-mode run kept (None: start from scratch)."""
    import ray.train

    done = _local_checkpoints(local_dir)
    return ray.train.Checkpoint.from_directory(done[-1]) if done else None


def _synced(batches, world: int, group=None):
    """Yield micro-batches while every rank still has one; then drain the rest (dropped for this read). The flag
    is a CPU tensor reduced over ``group``, a gloo group (no GPU sync per micro-batch)."""
    import torch.distributed as dist

    it = iter(batches)
    while True:
        item = next(it, None)
        if world > 1:
            more = torch.tensor([0 if item is None else 1])
            dist.all_reduce(more, op=dist.ReduceOp.MIN, group=group)
            if more.item() == 0:
                for _ in it:  # finish this rank's shard so the streaming split can start the next read
                    pass
                return
        elif item is None:
            return
        yield item


def _check_replicas_agree(params: list, group, step: int) -> None:
    """Under DDP every rank holds the same weights, and a checkpoint saves rank 0's copy: check that they agree
    (a float64 checksum of the trained weights, reduced over the ranks; one small CPU reduction per checkpoint)."""
    import torch.distributed as dist

    with torch.no_grad():
        mine = torch.stack([p.detach().double().sum() for p in params]).sum().cpu().reshape(1)
    lo, hi = mine.clone(), mine.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=group)
    if lo.item() != hi.item():
        raise RuntimeError(f"step {step}: the ranks' weights differ (checksums {lo.item()!r} to {hi.item()!r}), so "
                           "their gradients were not all-reduced alike; the checkpoint would hold one rank's copy")


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

    cfg = build_config(config["cfg"], check_paths=False)
    tr, data = cfg.train, cfg.data
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    ds_config = config.get("deepspeed")  # built and validated by the driver (train/zero.py)
    use_bf16 = device.type == "cuda" and tr.bf16
    # bf16 weights (ours with fp32 masters in MasterWeightAdamW, or DeepSpeed's): no autocast, inputs cast instead
    bf16_weights = tr.bf16_weights and not ds_config
    autocast = use_bf16 and not ds_config and not bf16_weights
    float_dtype = (torch.bfloat16 if bf16_weights or (ds_config and ds_config["bf16"]["enabled"])
                   else torch.float32)
    lr_factor = warmup_cosine(tr.max_steps, int(tr.warmup_ratio * tr.max_steps))  # of train.lr, by step
    torch.manual_seed(cfg.run.seed + rank)
    if cfg.scaling.torch_threads:
        torch.set_num_threads(cfg.scaling.torch_threads)

    # --- model ---------------------------------------------------------------------------------------------
    processor = AutoProcessor.from_pretrained(config["base_model_dir"])
    model = Qwen3ASRForConditionalGeneration.from_pretrained(config["base_model_dir"], dtype=torch.float32)
    local_dir = config.get("local_checkpoint_dir")  # Train's local mode (num_workers 0): no Ray storage
    resume = ray.train.get_checkpoint() or (local_dir and _latest_local_checkpoint(local_dir))
    state = {"step": 0, "read": 0, "batches_done": 0}
    if resume:
        with resume.as_directory() as d:
            model = Qwen3ASRForConditionalGeneration.from_pretrained(d, dtype=torch.float32)
            state = json.loads(open(os.path.join(d, STATE_FILE)).read())
            if rank == 0 and state.get("max_steps", tr.max_steps) != tr.max_steps:
                new_lr = tr.lr * lr_factor(state["step"])
                warnings.warn(
                    f"resuming at step {state['step']} with train.max_steps={tr.max_steps}, but this run was "
                    f"training towards {state['max_steps']}: the warm-up/cosine schedule is recomputed for the new "
                    f"total, so the learning rate jumps to {new_lr:.3g} (an interrupted run resumed with its own "
                    "max_steps continues its schedule exactly)", stacklevel=1)
            if not ds_config:
                optim_state = torch.load(os.path.join(d, OPTIM_FILE), map_location="cpu", weights_only=False)
    # on the model that trains (a resumed run's, loaded above): frozen parts, recomputation, faster forwards
    if cfg.model.freeze_audio_encoder:
        model.model.audio_tower.requires_grad_(False)
    if cfg.model.activation_checkpointing:
        model.activation_checkpointing_enable()
    if cfg.model.encoder_attention == "batched":
        use_batched_encoder_attention(model)
    if cfg.model.host_layout:
        use_host_layout(model)
    model.to(device)
    if cfg.model.channels_last_conv and not ds_config:
        use_channels_last_conv(model)
    graphs = cfg.model.compile and not ds_config and cfg.model.compile_mode == "reduce-overhead"  # CUDA graphs
    if cfg.model.compile and not ds_config:
        compile_layers(model, mode=cfg.model.compile_mode)

    # --- optimizer and schedule (DeepSpeed wraps the same ones) ---------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" and not ds_config else {}  # one kernel per step on a GPU
    adamw = dict(lr=tr.lr, betas=tuple(tr.betas), weight_decay=tr.weight_decay, **fused)
    optimizer = MasterWeightAdamW(params, **adamw) if bf16_weights else torch.optim.AdamW(params, **adamw)
    # on the inner AdamW when it steps fp32 master copies
    scheduler = torch.optim.lr_scheduler.LambdaLR(getattr(optimizer, "optimizer", optimizer), lr_factor)
    if bf16_weights:  # after the masters were copied from the fp32 weights
        model.to(torch.bfloat16)
    if graphs:  # gradients accumulate in place into buffers kept across steps, never in a graph's own memory
        keep_grad_buffers(params)
    engine = None
    if ds_config:
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                               lr_scheduler=scheduler, config=ds_config)
        model = engine
        if resume:
            with resume.as_directory() as d:
                engine.load_checkpoint(os.path.join(d, DS_TAG), tag=DS_TAG)
    else:
        if world > 1:
            model = ray.train.torch.prepare_model(model, move_to_device=False)
        if resume:
            optimizer.load_state_dict(optim_state["optimizer"])
            scheduler.load_state_dict(optim_state["scheduler"])
    core = model.module if hasattr(model, "module") else model
    # small host-side reductions (more batches? the dev loss) go over their own gloo group on CPU tensors: with
    # NCCL as the default group a CPU tensor cannot be reduced, and a GPU one would make every micro-batch wait for
    # a read-back. Made on CPU runs too (the default is gloo there), so the 2-worker test runs this very path.
    cpu_group = torch.distributed.new_group(backend="gloo") if world > 1 else None

    pad_id = processor.tokenizer.pad_token_id
    train_shard = ray.train.get_dataset_shard("train")
    dev_shard = ray.train.get_dataset_shard("dev") if config.get("has_dev") else None

    def micro_batches(read: int, skipped: SkippedRows):
        # rank 0's seed is the bucketing seed; other ranks' differ from every (read, rank) pair's
        rows = shuffle_rows(expand_repeats(skipped.filter(reads.rows(read))), data.shuffle_buffer,
                            seed=cfg.run.seed * 1000 + read + rank * 100_003)
        return iter_micro_batches(rows, pad_id, seed=cfg.run.seed * 1000 + read, window=data.bucket_window,
                                  max_frames=data.max_frames_per_batch, max_batch_size=data.max_batch_size,
                                  fixed_batch_size=data.fixed_batch_size)

    def forward(batch: dict) -> torch.Tensor:
        # the sizes the forward needs come from the CPU batch (model.host_layout), so it never waits for the GPU
        inputs = (host_inputs(batch, model, data.token_multiple, data.frame_multiple) if cfg.model.host_layout
                  else {k: v for k, v in batch.items() if torch.is_tensor(v)})
        if graphs:  # a new micro-batch: the graphs may reuse the memory of the last one's outputs
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return answer_loss(model, to_device(inputs, device, float_dtype))  # lm_head on answer positions only

    def skipped_counts(this_read: SkippedRows, before: dict) -> dict:
        """Utterances dropped so far in the run, all ranks': ``before`` (the reads before this one, all ranks)
        plus this read's, by reason. A collective: every rank calls it at the same steps and read ends."""
        t = torch.tensor([this_read.by_reason[r] for r in SKIP_REASONS], dtype=torch.float64)
        if world > 1:
            torch.distributed.all_reduce(t, group=cpu_group)
        return {r: before.get(r, 0) + int(n) for r, n in zip(SKIP_REASONS, t.tolist()) if before.get(r, 0) + n}

    @torch.no_grad()
    def dev_loss() -> tuple[float, int]:
        """(mean dev loss per micro-batch, dev utterances that could not be featurised), all ranks. The dev set is
        not split over the ranks (``DataConfig(datasets_to_split=["train"])``): every rank reads all of it, in
        the same order, so its drops are counted once, not summed over the ranks (they were: 2 workers reported
        each unreadable dev utterance twice)."""
        model.eval()
        total, n = 0.0, 0
        skipped = SkippedRows("dev")
        for batch, _ in _synced(iter_micro_batches(
                skipped.filter(dev_shard.iter_rows()), pad_id, seed=0, window=data.bucket_window,
                max_frames=data.max_frames_per_batch, max_batch_size=data.max_batch_size), world, cpu_group):
            total = total + forward(batch).detach()  # read back once, after the loop
            n += 1
        model.train()
        t = torch.tensor([float(total), n], dtype=torch.float64)
        if world > 1:
            torch.distributed.all_reduce(t, group=cpu_group)
        return float(t[0] / max(t[1], 1)), skipped.total

    def dev_eval(step: int) -> dict:
        """The dev split transcribed by the model being trained and scored by ``evaluate`` (the code of
        ``polyglot-lion evaluate --split dev``: greedy, WER or CER per dev set): on rank 0 only, while the other
        ranks wait at their next collective. Compiled layers run eagerly here (no recompiles or CUDA-graph
        recordings for generation's shapes)."""
        from ..evaluation.evaluate import dev_metrics, evaluate
        from ..inference.transcriber import Transcriber

        t0 = time.time()
        eager = torch.compiler.set_stance("force_eager") if cfg.model.compile else contextlib.nullcontext()
        try:
            with eager, torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                res = evaluate(f"step {step}", config["dev_eval_store"], split=data.dev_split,
                               max_utterances=config["dev_eval_per_set"], transcriber=Transcriber(core, processor),
                               log_to_mlflow=False, progress=False)
        finally:
            model.train()
        return {**dev_metrics(res), "dev_eval_s": time.time() - t0}

    mlflow_client = None
    if rank == 0 and config.get("mlflow_run_id"):
        from mlflow.tracking import MlflowClient

        mlflow_client = MlflowClient(tracking_uri=cfg.tracking.uri)

    def log_mlflow(metrics: dict) -> None:
        if mlflow_client is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            mlflow_client.log_batch(config["mlflow_run_id"], metrics=[
                Metric(k, float(v), now, int(metrics["step"])) for k, v in metrics.items() if k != "step"])

    def save_and_report(metrics: dict) -> None:
        """A transformers folder inference loads as is, plus what resuming needs. With DeepSpeed every rank
        writes its own partition files; Ray Train merges the ranks' folders into one checkpoint."""
        if world > 1 and not engine:
            _check_replicas_agree(params, cpu_group, state["step"])
        if rank != 0 and not engine:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            state_dict = None
            if engine:
                engine.save_checkpoint(os.path.join(d, DS_TAG), tag=DS_TAG)
                if engine.zero_optimization_stage() == 3:  # collective: gathers the sharded weights on rank 0
                    state_dict = engine._zero3_consolidated_16bit_state_dict()
            if rank == 0:
                core.save_pretrained(d, state_dict=state_dict)
                processor.save_pretrained(d)
                if not engine:
                    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                               os.path.join(d, OPTIM_FILE))
                with open(os.path.join(d, STATE_FILE), "w") as f:
                    json.dump(state, f)
                with open(os.path.join(d, METRICS_FILE), "w") as f:
                    json.dump(metrics, f)
            if local_dir:  # local mode reports a folder as is: keep it in the run folder, the last K of them
                kept = os.path.join(local_dir, f"checkpoint_step_{state['step']:08d}")
                for stale in (kept, kept + ".partial"):
                    shutil.rmtree(stale, ignore_errors=True)
                shutil.copytree(d, kept + ".partial")  # renamed when complete: a crash mid-copy leaves no
                os.replace(kept + ".partial", kept)    # folder that looks like a checkpoint
                kept_so_far = [(c, checkpoint_metrics(c)) for c in _local_checkpoints(local_dir)]
                for old in stale_checkpoints(kept_so_far, tr.keep_checkpoints, tr.select_by):
                    shutil.rmtree(old, ignore_errors=True)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(kept))
            else:
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    def should_stop_early(scores: list[float], metrics: dict) -> bool:
        """At a checkpoint: have the last ``train.early_stop_patience`` checkpoints not improved the metric? Rank
        0 decides (it alone has the dev error rate) and tells the others, so every rank stops at the same step.
        Adds ``checkpoints_since_best`` to ``metrics``."""
        since = checkpoints_since_best(scores, tr.early_stop_min_delta)
        flag = torch.tensor([float(since)], dtype=torch.float64)
        if world > 1:
            torch.distributed.broadcast(flag, src=0, group=cpu_group)
        metrics["checkpoints_since_best"] = int(flag.item())
        return metrics["checkpoints_since_best"] >= tr.early_stop_patience

    def maybe_crash(step: int) -> None:
        """Fault injection for tests: kill this worker process once, right after ``step``."""
        marker = config.get("crash_marker_dir") and os.path.join(config["crash_marker_dir"], CRASH_MARKER)
        if step == config.get("inject_crash_at_step") and not os.path.exists(marker):
            open(marker, "w").close()
            # Ray Train's controller learns of reported checkpoints by polling the workers; a crash within a
            # poll of the last report would restart from the one before. Die a little later, as real faults do.
            time.sleep(3)
            os._exit(1)

    # --- steps ----------------------------------------------------------------------------------------------
    model.train()
    step, read = state["step"], state["read"]
    first_step, t_start = step, time.time()  # the pace of this run's steps, for the time left
    skip = state["batches_done"]  # micro-batches of this read already trained on before the checkpoint
    # utterances dropped in the reads before this one, by reason, all ranks' (this read's are counted again as
    # it is replayed, so a resumed run counts each once)
    skipped_before: dict[str, int] = dict(state.get("skipped_before_read", {}))
    plan_rows = config.get("plan_rows") or 0  # rows of one epoch of the plan (for the fractional epoch metric)
    # train.select_by's metric at each checkpoint so far (rank 0's; train.early_stop_patience watches it)
    scores: list[float] = list(state.get("select_scores", []))
    stopped = bool(tr.early_stop_patience) and checkpoints_since_best(scores, tr.early_stop_min_delta) >= \
        tr.early_stop_patience
    if stopped and rank == 0:
        print(f"this run stopped early at step {step} ({tr.select_by} not improved for {tr.early_stop_patience} "
              "checkpoints): nothing left to train; a larger train.early_stop_patience continues it", flush=True)

    def new_window() -> dict:  # what one log window adds up
        return {"samples": 0, "audio_s": 0.0, "eff": 0.0, "audio_frac": 0.0, "micro": 0, "t0": time.time(),
                "loss": 0.0, "wait_s": 0.0}

    def timed(batches):
        """The micro-batches, adding the time the loop waits for each (Ray Data, shuffle, bucketing, collate)
        to the current window."""
        while True:
            t = time.time()
            item = next(batches, None)
            if item is None:
                return
            window["wait_s"] += time.time() - t
            yield item

    window = new_window()
    accum = 0  # micro-batches in the optimizer step being accumulated (a step may span two reads, as DeepSpeed's)
    reads = ShardReads(train_shard, read, data.read_ahead_rows)  # the next read starts while this one trains
    try:
        while step < tr.max_steps and not stopped:
            skipped = SkippedRows()
            batches = _synced(micro_batches(read, skipped), world, cpu_group)
            done_in_read = rows_in_read = 0
            for batch, n in timed(batches):
                rows_in_read += n
                if done_in_read < skip:  # replaying the deterministic order up to where the checkpoint was
                    done_in_read += 1
                    continue
                # DDP all-reduces the gradients once per optimizer step, not after every micro-batch
                hold_grads = not engine and world > 1 and accum + 1 < tr.grad_accum
                with model.no_sync() if hold_grads else contextlib.nullcontext():
                    loss = forward(batch)
                    if not engine:
                        (loss / tr.grad_accum).backward()
                done_in_read += 1
                window["samples"] += n
                window["audio_s"] += batch["input_features_mask"].sum().item() / 100.0
                window["eff"] += batch["padding_efficiency"]
                window["audio_frac"] += batch["audio_fraction"]
                window["micro"] += 1
                window["loss"] += loss.detach()  # summed on the device: read back only when logged
                if engine:  # DeepSpeed scales by the accumulation, clips and steps at the accumulation boundary
                    engine.backward(loss)
                    boundary = engine.is_gradient_accumulation_boundary()
                    engine.step()
                    if not boundary:
                        continue
                    grad_norm = engine.get_global_grad_norm() or 0.0
                else:
                    accum += 1
                    if accum < tr.grad_accum:
                        continue
                    accum = 0
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, tr.clip_norm if tr.clip_norm > 0 else float("inf"))
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=not graphs)
                step += 1
                state = {"step": step, "read": read, "batches_done": done_in_read, "max_steps": tr.max_steps,
                         "skipped_before_read": skipped_before, "select_scores": scores}
                last = step == tr.max_steps
                dev_due = dev_shard is not None and tr.dev_every and (step % tr.dev_every == 0 or last)
                eval_due = bool(config.get("dev_eval_store")) and tr.dev_eval_every and (
                    step % tr.dev_eval_every == 0 or last)
                if step % tr.log_every == 0 or step % tr.checkpoint_every == 0 or dev_due or eval_due or last:
                    elapsed = max(time.time() - window["t0"], 1e-9)
                    metrics = {
                        "step": step, "loss": float(window["loss"]) / max(1, window["micro"]),
                        "epoch": read * data.plan_passes + (rows_in_read * world / plan_rows if plan_rows else 0.0),
                        "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                        "samples_per_s": window["samples"] * world / elapsed,
                        "steps_per_s": window["micro"] / tr.grad_accum / elapsed,
                        "audio_s_per_s": window["audio_s"] * world / elapsed,
                        "padding_efficiency": window["eff"] / max(1, window["micro"]),
                        "audio_fraction": window["audio_frac"] / max(1, window["micro"]),
                        "peak_memory_mb": _peak_memory_mb(device),
                        # the share of the window spent waiting for input: > ~0.05 means the input is the limit
                        "input_wait_frac": window["wait_s"] / elapsed,
                    }
                    dropped = skipped_counts(skipped, skipped_before)
                    metrics["skipped_utterances"] = sum(dropped.values())  # could not be featurised: dropped
                    metrics.update({f"skipped_{reason}": n for reason, n in dropped.items()})
                    if dev_due:
                        metrics["dev_loss"], dev_skipped = dev_loss()
                        if dev_skipped:
                            metrics["dev_skipped_utterances"] = dev_skipped
                    if eval_due and rank == 0:
                        metrics.update(dev_eval(step))
                    checkpoint_due = step % tr.checkpoint_every == 0 or last
                    if checkpoint_due and tr.select_by != "last":
                        scores.append(float(metrics.get(tr.select_by, math.nan)))  # NaN on ranks without it
                        if tr.early_stop_patience:
                            stopped = state["stopped_early"] = should_stop_early(scores, metrics)
                    window = new_window()
                    log_mlflow(metrics)
                    if rank == 0:
                        print(progress_line(metrics, tr.max_steps, time.time() - t_start, step - first_step),
                              flush=True)
                    # Metrics alone do not go to ray.train.report: Train's controller takes one report per health
                    # check (every 2 s), its queue holds one, so a second report within that time blocks the step
                    # (measured: 2.0 s a step at log_every 1 in a worker, against 0.2 s), and each report is a
                    # barrier across ranks. MLflow has every logged step; Ray gets them with each checkpoint.
                    if checkpoint_due:
                        save_and_report(metrics)
                    if stopped and rank == 0:
                        print(f"stopping early at step {step}: {tr.select_by} has not improved for "
                              f"{metrics['checkpoints_since_best']} checkpoints (train.early_stop_patience="
                              f"{tr.early_stop_patience}, early_stop_min_delta={tr.early_stop_min_delta}; best "
                              f"{min((s for s in scores if not math.isnan(s)), default=math.nan):.4g})", flush=True)
                maybe_crash(step)
                if last or stopped:
                    break
            if step >= tr.max_steps or stopped:
                break
            if done_in_read == skip:
                if skipped.total:
                    raise RuntimeError(f"no utterance of the training data could be featurised: all "
                                       f"{skipped.total} were skipped ({dict(skipped.by_reason)}; the first are "
                                       "named above)")
                raise RuntimeError("the training data is empty: the plan selects no utterances from the store")
            skipped_before = skipped_counts(skipped, skipped_before)
            read, skip = read + 1, 0
    finally:
        reads.close()
