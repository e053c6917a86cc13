"""Training throughput: our Ray Train job vs the Qwen3-ASR reference recipe (transformers.Trainer), one run.

    python benchmarks/train_throughput.py                       # 400 synthetic clips, 2 epochs of the plan per side
    python benchmarks/train_throughput.py --repeats 2 --ours-passes 2 1 --step-ablation 16   # make bench-train
    python benchmarks/train_throughput.py --quick               # 160 clips, 1 epoch: checks that it works

Both sides train the same tiny random Qwen3-ASR checkpoint (built once) on CPU in fp32 with the same optimizer
(AdamW, lr 1e-3, betas 0.9/0.98, weight decay 0.01, 5% warm-up then cosine, clip 1.0) over the same clips: every
row of the two-stage balance plan (each utterance as many times as the plan uses it), ``--epochs`` times.

- ours: ``polyglot_lion.train.run.train`` with jobs/configs/qwen3_asr/tiny_cpu.yaml and overrides, on a local
  Ray session of 2 CPUs: Ray Data decodes and featurises in CPU actors, the worker buckets clips by duration
  under a frames budget. Its ``max_steps`` is the number of micro-batches that ``--epochs`` epochs make,
  computed beforehand by replaying its reads (``data.plan_passes`` epochs each) and bucketing over the plan
  (pure functions, same seeds; checked against the padding it logs per window).
- reference: the peer at its own defaults, plus the one setting a careful Hugging Face user would turn on.
  What Qwen3-ASR's ``finetuning/qwen3_asr_sft.py`` does: ``Trainer`` with a fixed batch size over the plan's
  rows of the store (FLAC bytes), a collator that loads each clip with ``librosa.load`` and runs the processor,
  and the script's loader defaults: ``dataloader_num_workers=4`` (so the collator runs in 4 worker processes),
  ``dataloader_pin_memory=True`` (without an accelerator torch skips the pinning),
  ``dataloader_persistent_workers=True`` and ``dataloader_prefetch_factor=2``. ``--ref-workers`` sets the
  worker count; its default is the script's 4, but never more workers than this machine has cores (2 on a
  2-core machine), since each is a process competing with the training step for a core; 0 loads in the main
  process (without persistent workers or prefetch). On top of the script: length grouping, transformers 5's
  ``train_sampling_strategy="group_by_length"`` (``group_by_length=True`` in 4.x), by clip duration as the plan
  records it (``duration_s``, in 10 ms mel frames). Stock transformers reads such lengths from a
  ``datasets.Dataset`` column (``length_column_name``), and ``datasets`` is not a dependency here, so a
  ``Trainer`` subclass hands them to the same ``LengthGroupedSampler``. The batch size is ours' mean clips per
  step, rounded, so both take about as many optimizer steps. The collator builds prompts and labels with our
  ``PromptEncoder`` and ``collate`` (the processor's feature extractor and tokenizer once per clip), so both
  sides feed the model the same examples; the script itself runs the processor twice per batch (once more for
  the prefix lengths), so this reference is a little faster than the script.

Ours' step is not the reference's: its loss projects only the answer positions onto the vocabulary and its audio
convolutions run channels-last (``polyglot_lion.model.efficiency``), and the forward's sizes come from the CPU
batch (``polyglot_lion.model.host_layout``). ``--step-ablation N`` times the step alone
(forward, backward, clip, AdamW; no Ray) on N of ours' micro-batches, five ways, each variant on its own copy of the
weights and taking turns on every micro-batch, so the job's ratio can be split into step and input pipeline.

Throughput is measured over the steady state: log windows of ``--log-every`` steps, the first (start-up, pipeline
warm-up) left out; ours' windows come from its MLflow history (per-window rates and timestamps), the reference's
from a step clock and each batch's figures, taken off the batch as it is trained. Audio seconds are valid mel
frames / 100. Padding is read off the same ``collate`` on both sides, per batch, averaged over batches:
``padding_efficiency`` (frames the clips need, each rounded up to the encoder's 1 s chunks / frames in the batch:
what batching controls) and ``audio_fraction`` (real audio frames / frames in the batch). The machine may be
shared: each run records the share of the cores other processes used meanwhile. Results go to ``--out`` (JSON) and
stdout (Markdown).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import time
from pathlib import Path

CONFIG = "jobs/configs/qwen3_asr/tiny_cpu.yaml"
SEED = 0


# --- data: corpus -> store -> two-stage plan -> tiny checkpoint (built once per --clips) ------------------------

def build_data(work: Path, clips: int) -> tuple[str, str, str]:
    """(store, plan, base model) under WORK/data-CLIPS; reused when already there."""
    from polyglot_lion.data.balance import corpus_from_table, make_plan, write_plan
    from polyglot_lion.data.store import read_metadata

    root = work / f"data-{clips}"
    store, plan, base = root / "store", root / "plan", root / "base_model"
    if not (plan / "plan.parquet").exists():
        import ray

        from polyglot_lion.data.prepare import ImportSpec, prepare
        from polyglot_lion.data.synth import synthesize_corpus
        from polyglot_lion.runtime import init_ray

        specs = synthesize_corpus(str(root / "corpus"), clips, eval_utterances=0, seed=SEED, min_words=6,
                                  max_words=16, progress=False)
        started = init_ray(num_cpus=2, object_store_mb=256, quiet=True)
        try:
            prepare([ImportSpec.from_dict(s) for s in specs if s["split"] == "train"], str(store))
        finally:
            if started:
                ray.shutdown()
        meta = read_metadata(str(store), "train", columns=["id", "language", "dataset", "duration_s"])
        corpus, durations = corpus_from_table(meta)
        write_plan(make_plan(corpus, "two-stage", SEED), durations, meta, str(plan))
    if not (base / "config.json").exists():
        from polyglot_lion.model.tiny import save_tiny_checkpoint

        texts = read_metadata(str(store), "train", columns=["text"])["text"].to_pylist()
        save_tiny_checkpoint(str(base), texts, seed=SEED, vocab_size=1000)
    return str(store), str(plan), str(base)


def clip_frames(store: str, base: str) -> dict[str, tuple[int, int]]:
    """{id: (real mel frames, frames it occupies)}: the second is rounded up to the encoder's 100-frame chunks."""
    from transformers import AutoProcessor

    from polyglot_lion.data.audio import decode_flac
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.model.prompts import PromptEncoder

    encoder = PromptEncoder(AutoProcessor.from_pretrained(base))
    out = {}
    for row in read_metadata(store, "train", columns=["id", "audio"]).to_pylist():
        feats, n_frames = encoder.features(decode_flac(row["audio"]))
        out[row["id"]] = (n_frames, feats.shape[1])
    return out


def replay_our_batches(store: str, plan: str, frames: dict, epochs: int, window: int, max_frames: int,
                       max_batch_size: int, shuffle_buffer: int, passes: int = 1) -> list[list[str]]:
    """The micro-batches (as id lists) that ours trains on in ``epochs`` epochs with ``data.plan_passes=passes``:
    each read of the dataset is ``passes`` epochs in one stream (``read_balanced``: shards in ``shard_order``,
    each row repeated as the plan says), mixed by ``shuffle_rows`` with that read's seed and bucketed as
    ``train.data.iter_micro_batches`` does, with the same seeds. Where ``epochs`` is not a multiple of
    ``passes``, the last read is cut after the micro-batch that brings its clips to ``epochs`` epochs' worth."""
    from collections import Counter

    import pyarrow.parquet as pq

    from polyglot_lion.data.balance import read_plan, shard_order
    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.model.prompts import bucket_batches
    from polyglot_lion.train.data import shuffle_rows

    if passes < 1 or epochs < 1:
        raise ValueError(f"epochs and passes must be >= 1 (got {epochs}, {passes})")
    table = read_plan(plan)
    counts = Counter(table["id"].to_pylist())
    wanted = set(table["dataset"].to_pylist())
    files = shard_order([f for p in list_partitions(store, "train") if p.dataset in wanted for f in p.files], SEED,
                        passes)
    stream = [uid for f in files for uid in pq.read_table(f, columns=["id"])["id"].to_pylist()
              for _ in range(counts.get(uid, 0))]
    batches, clips, wanted_clips = [], 0, epochs * len(stream) // passes
    for read in range(-(-epochs // passes)):
        seed = SEED * 1000 + read
        rows = list(shuffle_rows(iter(stream), shuffle_buffer, seed))  # rank 0
        for chunk, start in enumerate(range(0, len(rows), window)):
            items = rows[start:start + window]
            lengths = [frames[uid][1] for uid in items]
            for g in bucket_batches(lengths, max_frames, max_batch_size, seed=seed * 100_003 + chunk,
                                    window=len(items)):
                if clips >= wanted_clips:
                    return batches
                batches.append([items[i] for i in g])
                clips += len(g)
    return batches


def batch_padding(batch: list[str], frames: dict) -> tuple[float, float]:
    """(padding_efficiency, audio_fraction) of one batch, as ``collate`` computes them."""
    cells = len(batch) * max(frames[u][1] for u in batch)
    return sum(frames[u][1] for u in batch) / cells, sum(frames[u][0] for u in batch) / cells


def replay_stats(batches: list[list[str]], frames: dict) -> dict:
    pads = [batch_padding(b, frames) for b in batches]
    ids = [u for b in batches for u in b]
    return {"steps": len(batches), "clips": len(ids), "mean_clips_per_step": len(ids) / len(batches),
            "padding_efficiency": sum(p[0] for p in pads) / len(pads),
            "audio_fraction": sum(p[1] for p in pads) / len(pads),
            # no batching can do better than each clip alone in its own whole chunks
            "best_audio_fraction": sum(frames[u][0] for u in ids) / sum(frames[u][1] for u in ids)}


# --- where ours' per-step advantage comes from: the step alone, four ways -------------------------------------

STEP_VARIANTS = {  # name: (answer-only loss, channels-last convs, host-computed layout); the last is ours' default
    "model's own loss, default conv layout (the reference's step)": (False, False, False),
    "answer-only loss": (True, False, False),
    "channels-last convs": (False, True, False),
    "answer-only loss + channels-last convs": (True, True, False),
    "answer-only loss + channels-last convs + host layout (ours)": (True, True, True),
}


def step_ablation(store: str, base: str, batches: list[list[str]], n_batches: int, rounds: int,
                  threads: int) -> dict:
    """Seconds per micro-batch (forward, backward, clip, AdamW step) of the tiny checkpoint on ``n_batches`` of
    ours' replayed micro-batches (real clips, our bucketing), for each ``STEP_VARIANTS`` way of computing the
    step. Each variant trains its own copy of the same weights; the variants take turns on every micro-batch (so
    a drift in the machine's speed hits all alike), after one untimed step each; ``rounds`` passes over the
    micro-batches, the median per variant. In this process, with ``threads`` torch threads, no Ray."""
    import copy
    import statistics

    import torch
    from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

    from polyglot_lion.data.audio import decode_flac
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.model.answer import answer_loss
    from polyglot_lion.model.efficiency import use_channels_last_conv
    from polyglot_lion.model.encoder_attention import use_batched_encoder_attention
    from polyglot_lion.model.host_layout import host_inputs, use_host_layout
    from polyglot_lion.model.prompts import PromptEncoder, collate

    chosen = [batches[i * len(batches) // n_batches] for i in range(n_batches)]  # spread over the run
    wanted = {u for b in chosen for u in b}
    encoder = PromptEncoder(AutoProcessor.from_pretrained(base), "agnostic")
    rows = read_metadata(store, "train", columns=["id", "audio", "text", "language"]).to_pylist()
    examples = {r["id"]: encoder.encode(decode_flac(r["audio"]), r["text"], r["language"])
                for r in rows if r["id"] in wanted}
    pad_id = encoder.tokenizer.pad_token_id
    tensors = [{k: v for k, v in collate([examples[u] for u in b], pad_id).items() if torch.is_tensor(v)}
               for b in chosen]
    base_model = Qwen3ASRForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)

    def trainer(answer_only: bool, channels_last: bool, host: bool):
        model = copy.deepcopy(base_model).train()
        use_batched_encoder_attention(model)  # as ours (model.encoder_attention: batched)
        if channels_last:
            use_channels_last_conv(model)
        if host:
            use_host_layout(model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)

        def step(batch: dict) -> float:
            t0 = time.perf_counter()
            if host:  # computing the layout from the CPU batch is part of the step (timed)
                loss = answer_loss(model, host_inputs(batch, model))
            else:
                loss = answer_loss(model, batch) if answer_only else model(**batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0
        return step

    times: dict[str, list[float]] = {name: [] for name in STEP_VARIANTS}
    try:
        steps = {name: trainer(*how) for name, how in STEP_VARIANTS.items()}
        for step in steps.values():
            step(tensors[0])  # untimed warm-up
        for _ in range(rounds):
            spent = dict.fromkeys(steps, 0.0)
            for batch in tensors:
                for name, step in steps.items():
                    spent[name] += step(batch)
            for name in steps:
                times[name].append(spent[name] / n_batches)
    finally:
        torch.set_num_threads(saved_threads)
    first = next(iter(STEP_VARIANTS))
    medians = {name: statistics.median(v) for name, v in times.items()}
    return {"micro_batches": n_batches, "rounds": rounds, "torch_threads": threads,
            "clips_per_micro_batch": sum(len(b) for b in chosen) / n_batches,
            "s_per_micro_batch": medians, "runs_s_per_micro_batch": times,
            "speedup_vs_model_loss": {name: medians[first] / m for name, m in medians.items()}}


# --- CPU accounting: the machine may be shared, so say how much of it each side had ----------------------------

def machine_busy_s() -> float:
    """CPU-seconds all processes on this machine have used (Linux /proc/stat; 0 elsewhere)."""
    if not os.path.exists("/proc/stat"):
        return 0.0
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def descendants_cpu_s(root: int) -> float:
    """CPU-seconds of every live descendant of ``root`` plus the children they reaped (Ray's raylet reaps its
    workers, so actors that came and went are counted)."""
    if not os.path.exists("/proc/stat"):
        return 0.0
    kids: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(fields[1]), []).append(int(d))
            cpu[int(d)] = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += kids.get(pid, [])
    return total


def reaped_children_cpu_s() -> float:
    """CPU-seconds of this process's children that have ended and been waited for (the reference's loader workers
    once the Trainer shuts them down)."""
    t = os.times()
    return t.children_user + t.children_system


class CpuMeter:
    """Own CPU-seconds (this process and its descendants, live or ended meanwhile) and everyone else's, between
    start() and stop()."""

    def start(self) -> CpuMeter:
        self.t, self.busy, self.own, self.kids, self.reaped = (
            time.perf_counter(), machine_busy_s(), time.process_time(), descendants_cpu_s(os.getpid()),
            reaped_children_cpu_s())
        return self

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t
        own = (time.process_time() - self.own + descendants_cpu_s(os.getpid()) - self.kids
               + reaped_children_cpu_s() - self.reaped)
        others = max(0.0, machine_busy_s() - self.busy - own)
        return {"cpu_s": own, "others_cpu_s": others, "others_share": others / (wall * (os.cpu_count() or 1))}


def actor_starts(stage: str) -> int | None:
    """Actors Ray Data started for a map stage in this Ray session, from its debug log (None if unreadable)."""
    import glob
    import re

    import ray

    try:
        logs = ray._private.worker._global_node.get_session_dir_path() + "/logs/ray-data/*.log"
        lines = {line for f in glob.glob(logs) for line in open(f, errors="replace")
                 if f"Scaling up MapWorker(MapBatches({stage})) actor pool by" in line}
    except Exception:
        return None
    return sum(int(m.group(1)) for line in lines if (m := re.search(r"actor pool by (\d+)", line)))


# --- the two sides --------------------------------------------------------------------------------------------

def run_ours(store: str, plan: str, base: str, work: Path, steps: int, args, threads: int, passes: int = 1) -> dict:
    """Our job, as a user runs it (``scaling.torch_threads=threads``, ``data.plan_passes=passes``: epochs of the
    plan per read of the dataset, each read restarting the Ray Data pipeline); the steady state from its MLflow
    history."""
    import ray
    from mlflow.tracking import MlflowClient

    from polyglot_lion.config import load_config
    from polyglot_lion.runtime import init_ray
    from polyglot_lion.train.run import train

    name = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"  # a fresh run name: never resume an earlier run
    uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    cfg = load_config(CONFIG, [
        f"data.store={store}", f"data.plan={plan}", "data.dev_split=", f"model.source={base}",
        f"run.output_dir={work / 'runs'}", f"run.name={name}", f"tracking.uri={uri}",
        f"train.max_steps={steps}", f"train.log_every={args.log_every}", "train.dev_every=0",
        f"train.checkpoint_every={steps}", "scaling.num_workers=1", f"scaling.torch_threads={threads}",
        f"data.max_frames_per_batch={args.max_frames}", f"data.max_batch_size={args.max_batch_size}",
        f"data.bucket_window={args.bucket_window}", f"data.shuffle_buffer={args.shuffle_buffer}",
        f"data.plan_passes={passes}"])
    # Ray starts its workers at nice 15 and the reference runs at 0: on a busy machine that alone would decide.
    saved = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_mb=512, quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t1 = time.perf_counter()
    meter = CpuMeter().start()
    try:
        summary = train(cfg)  # Ray is already up, so train() leaves it running
        t2 = time.perf_counter()
        cpu = meter.stop()  # before shutdown, while the raylet still holds its workers' CPU time
        cpu["featurize_actor_starts"] = actor_starts("Featurize")
    finally:
        ray.shutdown()
        os.environ.pop("RAY_worker_niceness")
        if saved is not None:
            os.environ["RAY_worker_niceness"] = saved
    client = MlflowClient(tracking_uri=uri)
    keys = ("samples_per_s", "audio_s_per_s", "padding_efficiency", "audio_fraction", "loss")
    hist = {k: sorted(client.get_metric_history(summary["mlflow_run_id"], k), key=lambda m: m.step) for k in keys}
    windows = []
    for i, (sps, aps, eff, frac) in enumerate(zip(*(hist[k] for k in keys[:4]))):
        # The loop restarts a window's clock just before logging the previous one, so consecutive metric
        # timestamps (ms) bound each window (logging and report included); the first has no start here.
        prev = hist["samples_per_s"][i - 1] if i else None
        dt = (sps.timestamp - prev.timestamp) / 1000 if prev else None
        windows.append({"end_step": sps.step, "steps": sps.step - (prev.step if prev else 0), "seconds": dt,
                        "samples": sps.value * dt if dt else None, "audio_s": aps.value * dt if dt else None,
                        "samples_per_s": sps.value, "audio_s_per_s": aps.value, "padding_efficiency": eff.value,
                        "audio_fraction": frac.value})
    return dict(steady_state(windows), **cpu, ray_init_s=t1 - t0, wall_s=t2 - t1, final_loss=hist["loss"][-1].value,
                torch_threads=threads or max(1, int(cfg.scaling.cpus_per_worker)), windows=windows,
                mlflow_run_id=summary["mlflow_run_id"])


# The reference's loader workers as qwen3_asr_sft.py sets them (--num_workers 4 --pin_memory 1
# --persistent_workers 1 --prefetch_factor 2); the worker count is capped to this machine's cores (--ref-workers).
REFERENCE_WORKERS = 4
REFERENCE_PREFETCH_FACTOR = 2


class LibrosaCollator:
    """The reference's collator: each clip decoded from its FLAC bytes with ``librosa.load``, prompts and labels
    built with our ``PromptEncoder`` and ``collate``. It runs in the loader's worker processes (defined at module
    level so that workers started by spawn or forkserver can unpickle it); the batch keeps ``collate``'s padding
    figures, which ``run_reference``'s trainer takes off before the forward."""

    def __init__(self, processor):
        from polyglot_lion.model.prompts import PromptEncoder

        self.encoder, self.pad_id = PromptEncoder(processor), processor.tokenizer.pad_token_id

    def __call__(self, items: list[dict]) -> dict:
        import librosa

        from polyglot_lion.model.prompts import collate

        examples = []
        for it in items:
            samples, _ = librosa.load(io.BytesIO(it["audio"]), sr=16_000)
            examples.append(self.encoder.encode(samples, it["text"], it["language"]))
        return collate(examples, self.pad_id)


def run_reference(store: str, plan: str, base: str, work: Path, batch_size: int, args) -> dict:
    """The reference recipe: transformers.Trainer, fixed batches grouped by clip duration, librosa in the collator,
    ``args.ref_workers`` loader workers with pinned memory, persistent workers and prefetch, as the script sets
    them."""
    import librosa  # noqa: F401  (loaded before the loader forks its workers, which then share it)
    import torch
    from transformers import (
        AutoProcessor,
        PrinterCallback,
        Qwen3ASRForConditionalGeneration,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from polyglot_lion.config import load_config
    from polyglot_lion.data.balance import read_plan
    from polyglot_lion.data.store import read_metadata

    tr = load_config(CONFIG, check_paths=False).train

    class ReferenceTrainer(Trainer):
        """``Trainer`` as the script runs it, given two things stock transformers would find elsewhere: the clip
        lengths that ``group_by_length`` sorts by (a ``datasets.Dataset`` column there) and, as each batch is
        trained, its padding figures (taken off the batch: the model does not take them)."""

        def __init__(self, *a, lengths: list[int], **k):
            super().__init__(*a, **k)
            self.lengths = lengths
            self.batches: list[tuple[int, int, float, float]] = []  # clips, real frames, efficiency, audio fraction

        def _get_train_sampler(self, train_dataset=None):
            # what Trainer builds for train_sampling_strategy="group_by_length", with the lengths passed in
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=self.lengths)

        def training_step(self, model, inputs, *a, **k):
            mask = inputs["input_features_mask"]
            self.batches.append((len(mask), int(mask.sum()), inputs.pop("padding_efficiency"),
                                 inputs.pop("audio_fraction")))
            return super().training_step(model, inputs, *a, **k)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.t0, self.ends = 0.0, []

        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    t0, meter, workers = time.perf_counter(), CpuMeter().start(), args.ref_workers
    # the plan's rows from the store's train split, FLAC bytes as stored (decoded in the collator), and each
    # row's clip duration in 10 ms mel frames for the length grouping
    by_id = {r["id"]: r for r in read_metadata(store, "train", columns=["id", "audio", "text", "language"]).to_pylist()}
    table = read_plan(plan)
    rows = [by_id[uid] for uid in table["id"].to_pylist()]
    lengths = [round(d * 100) for d in table["duration_s"].to_pylist()]
    processor = AutoProcessor.from_pretrained(base)
    model = Qwen3ASRForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    clock = StepClock()
    targs = TrainingArguments(
        output_dir=str(work / "reference"), per_device_train_batch_size=batch_size, num_train_epochs=args.epochs,
        learning_rate=tr.lr, adam_beta1=tr.betas[0], adam_beta2=tr.betas[1], weight_decay=tr.weight_decay,
        optim="adamw_torch", lr_scheduler_type="cosine", warmup_steps=tr.warmup_ratio, max_grad_norm=tr.clip_norm,
        logging_steps=args.log_every, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=workers, dataloader_pin_memory=True, dataloader_persistent_workers=workers > 0,
        dataloader_prefetch_factor=REFERENCE_PREFETCH_FACTOR if workers > 0 else None,
        train_sampling_strategy="group_by_length", remove_unused_columns=False, seed=SEED)
    trainer = ReferenceTrainer(model=model, args=targs, train_dataset=rows, data_collator=LibrosaCollator(processor),
                               callbacks=[clock], lengths=lengths)
    trainer.remove_callback(PrinterCallback)
    out = trainer.train()
    trainer.save_model(str(work / "reference" / "final"))
    processor.save_pretrained(str(work / "reference" / "final"))
    wall, cpu = time.perf_counter() - t0, meter.stop()

    # batch i is step i + 1: the trainer recorded each batch as it trained it
    ends, stats, windows = [clock.t0] + clock.ends, trainer.batches, []
    for start in range(0, len(clock.ends), args.log_every):
        stop = min(start + args.log_every, len(clock.ends))
        part, dt = stats[start:stop], ends[stop] - ends[start]
        clips, frames = sum(s[0] for s in part), sum(s[1] for s in part)
        windows.append({"end_step": stop, "steps": stop - start, "seconds": dt, "samples": clips,
                        "audio_s": frames / 100, "samples_per_s": clips / dt, "audio_s_per_s": frames / 100 / dt,
                        "padding_efficiency": sum(s[2] for s in part) / len(part),
                        "audio_fraction": sum(s[3] for s in part) / len(part)})
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return dict(steady_state(windows), **cpu, wall_s=wall, final_loss=losses[-1] if losses else out.training_loss,
                torch_threads=torch.get_num_threads(), batch_size=batch_size, loader_workers=workers,
                windows=windows)


def steady_state(windows: list[dict]) -> dict:
    """Rates over every window but the first; padding over all of them (weighted by steps)."""
    steady = windows[1:]
    seconds = sum(w["seconds"] for w in steady)
    steps = sum(w["steps"] for w in windows)
    return {"steps": steps, "steady_steps": sum(w["steps"] for w in steady), "steady_s": seconds,
            "samples_per_s": sum(w["samples"] for w in steady) / seconds,
            "audio_s_per_s": sum(w["audio_s"] for w in steady) / seconds,
            "clips_per_step": sum(w["samples"] for w in steady) / sum(w["steps"] for w in steady),
            "padding_efficiency": sum(w["padding_efficiency"] * w["steps"] for w in windows) / steps,
            "audio_fraction": sum(w["audio_fraction"] * w["steps"] for w in windows) / steps}


def wait_for_quiet(max_load: float, timeout_s: float = 1800) -> float:
    """Wait until the 1-minute load average is at most ``max_load`` (or ``timeout_s`` passes); returns it."""
    t0 = time.time()
    while max_load > 0 and os.getloadavg()[0] > max_load and time.time() - t0 < timeout_s:
        time.sleep(10)
    return os.getloadavg()[0]


def median_run(runs: list[dict]) -> dict:
    """The run with the median audio-s/s (the lower middle one for an even count), with every run's figures."""
    ranked = sorted(runs, key=lambda r: r["audio_s_per_s"])
    return dict(ranked[(len(ranked) - 1) // 2], runs_audio_s_per_s=[round(r["audio_s_per_s"], 1) for r in runs],
                runs_others_share=[round(r["others_share"], 2) for r in runs])


def main() -> int:
    from polyglot_lion.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=400, help="train clips to synthesise (default 400; the two-stage "
                                                           "plan upsamples them about 3x)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the plan per side (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all sides, in turn; per side the median "
                                                           "round is reported (default 1)")
    ap.add_argument("--quick", action="store_true", help="a short run: --clips 160 --epochs 1 --repeats 1")
    ap.add_argument("--max-frames", type=int, default=8000, help="ours: data.max_frames_per_batch (default 8000)")
    ap.add_argument("--max-batch-size", type=int, default=16, help="ours: data.max_batch_size (default 16)")
    ap.add_argument("--bucket-window", type=int, default=256, help="ours: data.bucket_window (default 256)")
    ap.add_argument("--shuffle-buffer", type=int, default=2048, help="ours: data.shuffle_buffer (default 2048)")
    ap.add_argument("--ours-threads", type=int, nargs="+", default=None,
                    help="ours: scaling.torch_threads, one run of ours per value (0 = Ray's default, one thread per "
                         "CPU the worker reserves); the first is held to the targets (default: the config's)")
    ap.add_argument("--ours-passes", type=int, nargs="+", default=None,
                    help="ours: data.plan_passes, one run of ours per value (default: the config's, 1); with 2 "
                         "epochs, 2 = one read of the dataset, so no pipeline restart at the epoch boundary")
    ap.add_argument("--step-ablation", type=int, default=0, metavar="N",
                    help="also time the training step alone on N of ours' micro-batches, four ways (model's own "
                         "loss or answer-only, default or channels-last convs), in this process (default 0: off)")
    ap.add_argument("--ref-workers", type=int, default=None,
                    help=f"reference: dataloader_num_workers (default: qwen3_asr_sft.py's {REFERENCE_WORKERS}, at most "
                         f"one per core of this machine, here {min(REFERENCE_WORKERS, os.cpu_count() or 1)}; "
                         "0 = load in the main process)")
    ap.add_argument("--log-every", type=int, default=10, help="steps per log window on both sides (default 10)")
    ap.add_argument("--max-load", type=float, default=0, help="before each run, wait (up to 30 min) until the "
                                                              "1-minute load average is at most this (0 = no wait)")
    ap.add_argument("--work", default="bench_out/train_throughput", help="data, runs and MLflow store")
    ap.add_argument("--out", default="bench_out/train_throughput.json", help="results (JSON)")
    args = ap.parse_args()
    if args.quick:
        args.clips, args.epochs, args.repeats = 160, 1, 1
    if args.ref_workers is None:
        args.ref_workers = min(REFERENCE_WORKERS, os.cpu_count() or 1)
    if args.ref_workers < 0:
        ap.error(f"--ref-workers must be >= 0 (is {args.ref_workers})")
    threads = args.ours_threads or [load_config(CONFIG, check_paths=False).scaling.torch_threads]
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    passes = args.ours_passes or [load_config(CONFIG, check_paths=False).data.plan_passes]
    if min(passes) < 1 or args.epochs < 1:
        ap.error(f"--epochs ({args.epochs}) and --ours-passes ({passes}) must be >= 1")
    store, plan, base = build_data(work, args.clips)
    frames = clip_frames(store, base)
    # the micro-batches ours will train on, per plan_passes (a read of `passes` epochs is one shuffled stream)
    replays = {p: replay_our_batches(store, plan, frames, args.epochs, args.bucket_window, args.max_frames,
                                     args.max_batch_size, args.shuffle_buffer, p) for p in passes}
    batches = replays[passes[0]]  # the side held to the targets
    expected = replay_stats(batches, frames)
    batch_size = round(expected["mean_clips_per_step"])
    plan_rows = expected["clips"] // args.epochs
    audio_h = sum(frames[u][0] for b in batches for u in b) / 100 / 3600 / args.epochs
    print(f"plan: {plan_rows} rows ({audio_h * 60:.1f} audio-min) x {args.epochs} epochs; ours: {expected['steps']} "
          f"steps of {expected['mean_clips_per_step']:.2f} clips on average (replayed); reference: batch size "
          f"{batch_size}, {args.epochs * math.ceil(plan_rows / batch_size)} steps, grouped by length, "
          f"{args.ref_workers} loader worker(s)", flush=True)

    ours_sides = {f"ours_threads_{t}_passes_{p}": (t, p) for t in threads for p in passes}
    sides = ["reference", *ours_sides]
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    for rep in range(args.repeats):
        for side in sides:
            load = wait_for_quiet(args.max_load)
            if side == "reference":
                r = run_reference(store, plan, base, work, batch_size, args)
            else:
                replayed = replays[ours_sides[side][1]]
                r = run_ours(store, plan, base, work, len(replayed), args, *ours_sides[side])
                # the replay is right if it predicts the padding of every logged window
                r["replay_max_window_error"] = max(abs(w["padding_efficiency"] - sum(
                    batch_padding(b, frames)[0] for b in replayed[w["end_step"] - w["steps"]:w["end_step"]])
                    / w["steps"]) for w in r["windows"])
            r["load_before"] = load
            runs[side].append(r)
            print(f"round {rep + 1}/{args.repeats} {side}: {r['audio_s_per_s']:.1f} audio-s/s, "
                  f"wall {r['wall_s']:.1f} s, others' CPU {r['others_share']:.0%}", flush=True)

    ablation = None
    if args.step_ablation:
        ablation = step_ablation(store, base, batches, args.step_ablation, max(3, args.repeats),
                                 ours_sides[sides[1]][0] or 2)
    summary = {k: median_run(v) for k, v in runs.items()}
    reference, ours = summary["reference"], summary[sides[1]]
    ratio = ours["audio_s_per_s"] / reference["audio_s_per_s"]
    result = {
        "setup": {"clips": args.clips, "plan_rows": plan_rows, "epochs": args.epochs, "repeats": args.repeats,
                  "cores": os.cpu_count(), "audio_hours_per_epoch": audio_h,
                  "ours_knobs": {"max_frames_per_batch": args.max_frames, "max_batch_size": args.max_batch_size,
                                 "bucket_window": args.bucket_window,
                                 "shuffle_buffer": args.shuffle_buffer, "torch_threads": threads,
                                 "plan_passes": passes},
                  "reference_batch_size": batch_size,
                  "reference_loader": {"num_workers": args.ref_workers, "pin_memory": True,
                                       "persistent_workers": args.ref_workers > 0,
                                       "prefetch_factor": REFERENCE_PREFETCH_FACTOR if args.ref_workers else None,
                                       "train_sampling_strategy": "group_by_length",
                                       "lengths": "plan duration_s in 10 ms frames"},
                  "log_every": args.log_every, "ours_replayed": expected,
                  "ours_replayed_by_passes": {p: replay_stats(b, frames) for p, b in replays.items()}},
        "summary": summary, "runs": runs, "audio_s_per_s_ratio": ratio, "step_ablation": ablation,
        "targets": {"audio_s_per_s_ratio_ge_1.3": ratio >= 1.3,
                    "ours_padding_efficiency_ge_0.90": ours["padding_efficiency"] >= 0.9},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    print(f"\n{plan_rows} plan rows x {args.epochs} epochs; steady state = every log window of {args.log_every} "
          f"steps but the first; median of {args.repeats} round(s)\n")
    print("| side | torch threads | epochs per read | steps | clips/step | samples/s | audio-s/s | padding efficiency | audio fraction "
          "| steady (s) | wall (s) | others' CPU | audio-s/s vs reference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side in sides:
        r = summary[side]
        label = "reference: HF Trainer, librosa collator" if side == "reference" else "ours: Ray Train + Ray Data"
        per_read = ours_sides[side][1] if side in ours_sides else "-"
        print(f"| {label} | {r['torch_threads']} | {per_read} | {r['steps']} | {r['clips_per_step']:.1f} | {r['samples_per_s']:.1f} "
              f"| {r['audio_s_per_s']:.1f} | {r['padding_efficiency']:.1%} | {r['audio_fraction']:.1%} "
              f"| {r['steady_s']:.1f} | {r['wall_s']:.1f} | {r['others_share']:.0%} "
              f"| {r['audio_s_per_s'] / reference['audio_s_per_s']:.2f}x |")
    print(f"\naudio-s/s ours / reference: {ratio:.2f}x (target >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'}); "
          f"ours' padding efficiency {ours['padding_efficiency']:.1%} (target >= 90%: "
          f"{'met' if ours['padding_efficiency'] >= 0.9 else 'NOT met'}); audio fraction {ours['audio_fraction']:.1%} "
          f"(at most {expected['best_audio_fraction']:.1%} with 1 s encoder chunks); ray.init "
          f"({ours['ray_init_s']:.1f} s) is not in ours' wall")
    print(f"others' CPU: the share of the machine's {os.cpu_count()} cores other processes used meanwhile; "
          f"results: {args.out}")
    if ablation:
        print(f"\nThe step alone (forward, backward, clip, AdamW) on {ablation['micro_batches']} of ours' micro-batches "
              f"({ablation['clips_per_micro_batch']:.1f} clips each), {ablation['torch_threads']} torch threads, median "
              f"of {ablation['rounds']} interleaved rounds:\n")
        print("| step | s per micro-batch | speed-up |")
        print("|---|---:|---:|")
        for name, sec in ablation["s_per_micro_batch"].items():
            print(f"| {name} | {sec:.3f} | {ablation['speedup_vs_model_loss'][name]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
