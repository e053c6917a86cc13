"""The training loop, top to bottom: one function that each Ray Train worker runs.

data -> model -> optimizer and schedule -> resume -> steps (accumulate, clip, step, log, dev loss and dev error
rate) -> checkpoint.
The driver (``run.py``) builds the datasets and the base model; this file holds no Ray Data or MLflow set-up. The
parts of a step are in ``step.py`` (shared with ``benchmarks/gpu_train.py``), what is measured and logged in
``metrics.py``, what a checkpoint holds and which are kept in ``checkpoints.py``.

Three ways to run the same steps: one process (CPU or one GPU), DDP across Ray workers, or DeepSpeed ZeRO-2/3
(``deepspeed.initialize`` wraps our AdamW and schedule, and then owns accumulation, clipping and bf16).
Each backward pass is a collective when there are several ranks, so every rank runs the same number of
micro-batches per read of the dataset: the read ends for all as soon as one rank's shard runs out. One read is
``data.plan_passes`` epochs of the plan (``read_balanced``); each read restarts the Ray Data pipeline, and
``ShardReads`` starts the next read in the background while the current one trains (``data.read_ahead_rows``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
import warnings

import torch

from ..config import build_config
from ..folders import cached_local_copy
from ..model.efficiency import keep_grad_buffers
from ..testing.faults import maybe_crash
from .budget import TimeBudget
from .checkpoints import (
    DS_TAG,
    OPTIM_FILE,
    STATE_FILE,
    Checkpointer,
    checkpoints_since_best,
    latest_local_checkpoint,
    should_stop_early,
)
from .data import ShardReads, SkippedRows, expand_repeats, iter_micro_batches, shuffle_rows, synced
from .metrics import (
    DevChecks,
    MlflowLog,
    Window,
    progress_line,
    skipped_counts,
    skipped_metrics,
    stop_message,
    stopped_message,
)
from .step import (
    build_optimizer,
    micro_batch_loss,
    optimizer_step,
    precision,
    prepare_model,
    uses_cuda_graphs,
    warmup_cosine,
)
from .zero import skip_shm_all_reduce_build


def train_loop_per_worker(config: dict) -> None:
    import ray.train  # heavy (Ray), and only in a Train worker: the driver imports this module to name the loop
    import ray.train.torch

    cfg = build_config(config["cfg"], check_paths=False)
    tr, data = cfg.train, cfg.data
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    ds_config = config.get("deepspeed")  # built and validated by the driver (train/zero.py)
    bf16_weights, autocast, float_dtype = precision(tr, device, ds_config)
    torch.manual_seed(cfg.run.seed + rank)
    if cfg.scaling.torch_threads:
        torch.set_num_threads(cfg.scaling.torch_threads)

    # --- model (the base, or the checkpoint a resumed run left), optimizer and schedule -------------------------
    local_dir = config.get("local_checkpoint_dir")  # Train's local mode (num_workers 0): no Ray storage
    resume = ray.train.get_checkpoint() or (local_dir and latest_local_checkpoint(local_dir))
    processor, model, state, optim_state = _setup_model(config["base_model_dir"], cfg, resume, rank, device, ds_config)
    # host-side reductions go over a gloo group of CPU tensors (NCCL cannot reduce them; a GPU tensor would make
    # every micro-batch wait for a read-back); made on CPU runs too, so the 2-worker test runs this very path
    cpu_group = torch.distributed.new_group(backend="gloo") if world > 1 else None
    budget = TimeBudget(tr.max_minutes, state.get("train_s", 0.0), world, cpu_group)  # train.max_minutes
    graphs = uses_cuda_graphs(cfg.model, deepspeed=bool(ds_config))  # gradient buffers kept, a mark per micro-batch
    engine, model, optimizer, scheduler, params = _setup_optimizer(model, tr, device, bf16_weights, graphs, ds_config,
                                                                   resume, optim_state, world, budget)
    core = model.module if hasattr(model, "module") else model
    forward = functools.partial(micro_batch_loss, model, device=device, float_dtype=float_dtype, autocast=autocast,
                                host_layout=cfg.model.host_layout, token_multiple=data.token_multiple,
                                frame_multiple=data.frame_multiple, graphs=graphs)
    train_shard = ray.train.get_dataset_shard("train")
    dev = DevChecks(model, core, processor, forward, ray.train.get_dataset_shard("dev") if config.get("has_dev")
                    else None, cfg, config.get("dev_eval_store"), config.get("dev_eval_per_set"), device, autocast,
                    rank, world, cpu_group)
    checkpointer = Checkpointer(core, processor, optimizer, scheduler, engine, params, rank, world, cpu_group,
                                local_dir, tr.keep_checkpoints, tr.select_by)
    log_mlflow = MlflowLog(cfg.tracking.uri, config.get("mlflow_run_id") if rank == 0 else None)

    # --- steps ----------------------------------------------------------------------------------------------
    step, read = state["step"], state["read"]
    skip = state["batches_done"]  # micro-batches of this read already trained on before the checkpoint
    # utterances dropped in the reads before this one, by reason, all ranks' (this read's are counted again as
    # it is replayed, so a resumed run counts each once)
    skipped_before: dict[str, int] = dict(state.get("skipped_before_read", {}))
    # train.select_by's metric at each checkpoint so far (rank 0's; train.early_stop_patience watches it)
    scores: list[float] = list(state.get("select_scores", []))
    stopped = bool(tr.early_stop_patience) and checkpoints_since_best(scores, tr.early_stop_min_delta) >= \
        tr.early_stop_patience
    if stopped and rank == 0:
        print(stopped_message(step, tr), flush=True)
    plan_rows = config.get("plan_rows") or 0  # rows of one epoch of the plan (for the fractional epoch metric)
    model.train()
    first_step, t_start, window = step, time.time(), Window()  # the pace of this run's steps, for the time left
    accum = 0  # micro-batches in the optimizer step being accumulated (a step may span two reads, as DeepSpeed's)
    reads = ShardReads(train_shard, read, data.read_ahead_rows)  # the next read starts while this one trains
    try:
        while step < tr.max_steps and not stopped and not budget.done:
            skipped = SkippedRows()
            batches = _micro_batches(reads, read, skipped, data, cfg.run.seed, rank, processor.tokenizer.pad_token_id)
            done_in_read = rows_in_read = 0
            for batch, n in window.timed(synced(batches, world, cpu_group)):
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
                window.add(batch, n, loss)
                if engine:  # DeepSpeed scales by the accumulation, clips and steps at the accumulation boundary
                    grad_norm = _deepspeed_step(engine, loss)
                    if grad_norm is None:
                        continue
                else:
                    accum += 1
                    if accum < tr.grad_accum:
                        continue
                    accum = 0
                    grad_norm = optimizer_step(params, optimizer, scheduler, tr.clip_norm, keep_grad_buffers=graphs)
                step += 1
                last = step == tr.max_steps or budget.out_of_time(step, tr.log_every)
                state = {"step": step, "read": read, "batches_done": done_in_read, "max_steps": tr.max_steps,
                         "skipped_before_read": skipped_before, "select_scores": scores, "train_s": budget.spent_s()}
                checkpoint_due = step % tr.checkpoint_every == 0 or last
                if step % tr.log_every == 0 or checkpoint_due or dev.due(step, last):
                    epoch = read * data.plan_passes + (rows_in_read * world / plan_rows if plan_rows else 0.0)
                    metrics = window.metrics(step, epoch, scheduler.get_last_lr()[0], grad_norm, world,
                                             tr.grad_accum, device)
                    metrics.update(skipped_metrics(skipped_counts(skipped, skipped_before, world, cpu_group)))
                    metrics.update(dev.measure(step, last), train_s=state["train_s"])  # train_s: max_minutes counts it
                    if checkpoint_due and tr.select_by != "last":
                        scores.append(float(metrics.get(tr.select_by, math.nan)))  # NaN on ranks without it
                        if tr.early_stop_patience:
                            stopped = state["stopped_early"] = should_stop_early(
                                scores, metrics, tr.early_stop_patience, tr.early_stop_min_delta, world, cpu_group)
                    window.reset()
                    log_mlflow(metrics)
                    if rank == 0:
                        print(progress_line(metrics, tr.max_steps, time.time() - t_start, step - first_step),
                              flush=True)
                    # metrics go to ray.train.report only with a checkpoint: a report is a barrier across ranks, and
                    # a second one within Train's 2-s health check blocks the step (MLflow has every logged step)
                    if checkpoint_due:
                        checkpointer.save_and_report(state, metrics)
                    if stopped and rank == 0:
                        print(stop_message(step, tr, metrics, scores), flush=True)
                maybe_crash(step, config.get("inject_crash_at_step"), config.get("crash_marker_dir"))
                if last or stopped:
                    break
            if step >= tr.max_steps or stopped or budget.done:
                break
            _check_read_trained(done_in_read, skip, skipped)
            skipped_before = skipped_counts(skipped, skipped_before, world, cpu_group)
            read, skip = read + 1, 0
    finally:
        reads.close()


def _setup_model(base_model_dir: str, cfg, resume, rank: int, device: torch.device, ds_config: dict | None):
    """(processor, model prepared for training, training state, optimizer state or None): the base model, or with
    ``resume`` (a Ray Train checkpoint) the model, data position and optimizer it holds. A resume with another
    ``train.max_steps`` is warned about: the schedule is recomputed for the new total. ``base_model_dir`` may be
    a bucket location (a run's tiny base model): loaded from this node's temporary copy."""
    # heavy (transformers' model classes), and only in a Train worker
    from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

    tr = cfg.train
    base_model_dir = cached_local_copy(base_model_dir)
    processor = AutoProcessor.from_pretrained(base_model_dir)
    model = Qwen3ASRForConditionalGeneration.from_pretrained(base_model_dir, dtype=torch.float32)
    state, optim_state = {"step": 0, "read": 0, "batches_done": 0}, None
    if resume:
        with resume.as_directory() as d:
            model = Qwen3ASRForConditionalGeneration.from_pretrained(d, dtype=torch.float32)
            state = json.loads(open(os.path.join(d, STATE_FILE)).read())
            if rank == 0 and state.get("max_steps", tr.max_steps) != tr.max_steps:
                new_lr = tr.lr * warmup_cosine(tr.max_steps, int(tr.warmup_ratio * tr.max_steps))(state["step"])
                warnings.warn(
                    f"resuming at step {state['step']} with train.max_steps={tr.max_steps}, but this run was "
                    f"training towards {state['max_steps']}: the warm-up/cosine schedule is recomputed for the new "
                    f"total, so the learning rate jumps to {new_lr:.3g} (an interrupted run resumed with its own "
                    "max_steps continues its schedule exactly)", stacklevel=1)
            if not ds_config:
                optim_state = torch.load(os.path.join(d, OPTIM_FILE), map_location="cpu", weights_only=False)
    # on the model that trains (a resumed run's, loaded above): frozen parts, recomputation, faster forwards
    prepare_model(model, cfg.model, device, deepspeed=bool(ds_config))
    return processor, model, state, optim_state


def _setup_optimizer(model, tr, device: torch.device, bf16_weights: bool, graphs: bool, ds_config: dict | None,
                     resume, optim_state: dict | None, world: int, budget: TimeBudget):
    """(DeepSpeed's engine or None, the model to call, optimizer, schedule, trained parameters): AdamW and its
    schedule, wrapped with the model by DeepSpeed (its states loaded from ``resume``) or, on ``world`` > 1 ranks,
    the model wrapped by DDP (the optimizer and schedule states loaded from ``optim_state``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = build_optimizer(params, tr, device, bf16_weights, deepspeed=bool(ds_config),
                                           time_progress=budget.progress if tr.max_minutes else None)
    if bf16_weights:  # after the masters were copied from the fp32 weights
        model.to(torch.bfloat16)
    if graphs:  # gradients accumulate in place into buffers kept across steps, never in a graph's own memory
        keep_grad_buffers(params)
    if ds_config:
        import deepspeed  # optional dependency: only the scale-out path needs it

        if device.type == "cpu":
            skip_shm_all_reduce_build()
        engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                               lr_scheduler=scheduler, config=ds_config)
        if resume:
            with resume.as_directory() as d:
                engine.load_checkpoint(os.path.join(d, DS_TAG), tag=DS_TAG)
        return engine, engine, optimizer, scheduler, params
    if world > 1:
        import ray.train.torch  # heavy (Ray), and only in a Train worker

        model = ray.train.torch.prepare_model(model, move_to_device=False)
    if optim_state is not None:
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])
    return None, model, optimizer, scheduler, params


def _deepspeed_step(engine, loss: torch.Tensor):
    """DeepSpeed's backward and step of one micro-batch; its gradient norm at an accumulation boundary (where it
    clipped and stepped the optimizer), None inside an accumulation."""
    engine.backward(loss)
    boundary = engine.is_gradient_accumulation_boundary()
    engine.step()
    return (engine.get_global_grad_norm() or 0.0) if boundary else None


def _micro_batches(reads: ShardReads, read: int, skipped: SkippedRows, data, seed: int, rank: int, pad_id: int):
    """Read ``read``'s micro-batches on this rank: rows that could not be featurised dropped (counted in
    ``skipped``), repeated by their count, shuffled, bucketed. Rank 0's seed is the bucketing seed; other ranks'
    shuffle seeds differ from every (read, rank) pair's."""
    rows = shuffle_rows(expand_repeats(skipped.filter(reads.rows(read))), data.shuffle_buffer,
                        seed=seed * 1000 + read + rank * 100_003)
    return iter_micro_batches(rows, pad_id, seed=seed * 1000 + read, window=data.bucket_window,
                              max_frames=data.max_frames_per_batch, max_batch_size=data.max_batch_size,
                              fixed_batch_size=data.fixed_batch_size)


def _check_read_trained(done_in_read: int, skip: int, skipped: SkippedRows) -> None:
    """A read that gave no micro-batch past the replayed ones: the data is empty, or nothing could be featurised."""
    if done_in_read == skip:
        if skipped.total:
            raise RuntimeError(f"no utterance of the training data could be featurised: all {skipped.total} were "
                               f"skipped ({dict(skipped.by_reason)}; the first are named above)")
        raise RuntimeError("the training data is empty: the plan selects no utterances from the store")
