"""Training throughput: our Ray Train job vs the Qwen3-ASR reference recipe (transformers.Trainer), one run.

    python benchmarks/train_throughput.py                 # 400 synthetic clips, 2 epochs of the plan per side
    python benchmarks/train_throughput.py --quick         # 160 clips, 1 epoch: checks that it works (~1 min)

Both sides train the same tiny random Qwen3-ASR checkpoint (built once) on CPU in fp32 with the same optimizer
(AdamW, lr 1e-3, betas 0.9/0.98, weight decay 0.01, 5% warm-up then cosine, clip 1.0) over the same clips: every
row of the two-stage balance plan (each utterance as many times as the plan uses it), ``--epochs`` times.

- ours: ``polyglot_lion.train.run.train`` with jobs/configs/qwen3_asr/tiny_cpu.yaml and overrides, on a local
  Ray session of 2 CPUs: Ray Data decodes and featurises in CPU actors, the worker buckets clips by duration
  under a frames budget. Its ``max_steps`` is the number of micro-batches that ``--epochs`` epochs make,
  computed beforehand by replaying its bucketing over the plan (pure functions, same seeds).
- reference: what Qwen3-ASR's ``finetuning/qwen3_asr_sft.py`` does: ``Trainer`` with a fixed batch size,
  ``dataloader_num_workers=0``, a torch Dataset over the store rows and a collator that loads each clip with
  ``librosa.load`` and runs the processor. The batch size is the mean clips per step of ours, so both take
  about the same number of optimizer steps. The collator builds prompts and labels with our ``PromptEncoder``
  and ``collate`` (the processor's feature extractor and tokenizer once per clip), so both sides feed the
  model token-for-token the same examples; the script itself calls the processor twice per batch (once more
  for the prefix lengths), so this reference is a little faster than the script.

Throughput is measured over the steady state: log windows of ``--log-every`` steps, the first one (process
start-up, pipeline warm-up) left out; ours' windows come from its MLflow metric history (per-window rates and
timestamps), the reference's from a step clock and its collator. Audio seconds are valid mel frames / 100
(``input_features_mask``), padding the share of padded mel frames per batch, on both sides. Results go to
``--out`` (JSON) and stdout (Markdown).
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
    """{id: (valid mel frames, feature length)}; the feature length is rounded up to the encoder's 100-frame chunk."""
    from polyglot_lion.data.audio import decode_flac
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.model.prompts import PromptEncoder
    from transformers import AutoProcessor

    encoder = PromptEncoder(AutoProcessor.from_pretrained(base))
    out = {}
    for row in read_metadata(store, "train", columns=["id", "audio"]).to_pylist():
        feats, n_frames = encoder.features(decode_flac(row["audio"]))
        out[row["id"]] = (n_frames, feats.shape[1])
    return out


def replay_our_batches(store: str, plan: str, frames: dict, epochs: int, window: int, max_frames: int,
                       max_batch_size: int) -> list[list[str]]:
    """The micro-batches (as id lists) that ours trains on in ``epochs`` epochs: the row order of
    ``read_balanced`` (store shards in order, each row repeated as the plan says) bucketed as
    ``train.data.iter_micro_batches`` does, with the same seeds."""
    from collections import Counter

    import pyarrow.parquet as pq
    from polyglot_lion.data.balance import read_plan
    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.model.prompts import bucket_batches

    table = read_plan(plan)
    counts = Counter(table["id"].to_pylist())
    wanted = set(table["dataset"].to_pylist())
    rows = [uid for p in list_partitions(store, "train") if p.dataset in wanted for f in p.files
            for uid in pq.read_table(f, columns=["id"])["id"].to_pylist() for _ in range(counts.get(uid, 0))]
    batches = []
    for epoch in range(epochs):
        seed = SEED * 1000 + epoch
        for chunk, start in enumerate(range(0, len(rows), window)):
            items = rows[start:start + window]
            lengths = [frames[uid][1] for uid in items]
            for g in bucket_batches(lengths, max_frames, max_batch_size, seed=seed * 100_003 + chunk,
                                    window=len(items)):
                batches.append([items[i] for i in g])
    return batches


def non_padding(batch: list[str], frames: dict) -> float:
    return sum(frames[u][0] for u in batch) / (len(batch) * max(frames[u][1] for u in batch))


def padding_stats(batches: list[list[str]], frames: dict) -> dict:
    effs = [non_padding(b, frames) for b in batches]
    return {"steps": len(batches), "clips": sum(len(b) for b in batches),
            "mean_clips_per_step": sum(len(b) for b in batches) / len(batches),
            "non_padding_frames": sum(effs) / len(effs)}


# --- the two sides --------------------------------------------------------------------------------------------

def run_ours(store: str, plan: str, base: str, work: Path, steps: int, args) -> dict:
    """Our job, as a user runs it; the steady-state rate comes from its MLflow history."""
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
        f"train.checkpoint_every={steps}", "scaling.num_workers=1",
        f"data.max_frames_per_batch={args.max_frames}", f"data.max_batch_size={args.max_batch_size}",
        f"data.bucket_window={args.bucket_window}"])
    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_mb=512, quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t1 = time.perf_counter()
    try:
        summary = train(cfg)
    finally:
        ray.shutdown()
    t2 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri)
    hist = {k: sorted(client.get_metric_history(summary["mlflow_run_id"], k), key=lambda m: m.step)
            for k in ("samples_per_s", "audio_s_per_s", "padding_efficiency", "loss")}
    windows = []
    for i, (sps, aps, eff) in enumerate(zip(hist["samples_per_s"], hist["audio_s_per_s"], hist["padding_efficiency"])):
        # The loop restarts a window's clock just before logging the previous one, so consecutive metric
        # timestamps (ms) bound each window (logging and report included); the first has no start here.
        prev = hist["samples_per_s"][i - 1] if i else None
        dt = (sps.timestamp - prev.timestamp) / 1000 if prev else None
        windows.append({"end_step": sps.step, "steps": sps.step - (prev.step if prev else 0), "seconds": dt,
                        "samples": sps.value * dt if dt else None, "audio_s": aps.value * dt if dt else None,
                        "samples_per_s": sps.value, "audio_s_per_s": aps.value, "non_padding_frames": eff.value})
    return dict(steady_state(windows), ray_init_s=t1 - t0, wall_s=t2 - t1, final_loss=hist["loss"][-1].value,
                torch_threads=1, windows=windows, mlflow_run_id=summary["mlflow_run_id"])


def run_reference(store: str, plan: str, base: str, work: Path, batch_size: int, args) -> dict:
    """The reference recipe: transformers.Trainer, fixed batches, librosa in the collator, no loader workers."""
    import librosa
    import torch
    from polyglot_lion.config import load_config
    from polyglot_lion.data.balance import read_plan
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.model.prompts import PromptEncoder, collate
    from transformers import (
        AutoProcessor,
        PrinterCallback,
        Qwen3ASRForConditionalGeneration,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tr = load_config(CONFIG, check_paths=False).train

    class PlanRows(torch.utils.data.Dataset):
        """The plan's rows from the store's train split, FLAC bytes as stored (decoded in the collator)."""

        def __init__(self):
            cols = ["id", "audio", "text", "language"]
            by_id = {r["id"]: r for r in read_metadata(store, "train", columns=cols).to_pylist()}
            self.rows = [by_id[uid] for uid in read_plan(plan)["id"].to_pylist()]

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return self.rows[i]

    class LibrosaCollator:
        def __init__(self, processor):
            self.encoder, self.pad_id = PromptEncoder(processor), processor.tokenizer.pad_token_id
            self.batches: list[tuple[int, int, float]] = []  # (clips, valid mel frames, non-padding share)

        def __call__(self, items: list[dict]) -> dict:
            examples = []
            for it in items:
                samples, _ = librosa.load(io.BytesIO(it["audio"]), sr=16_000)
                examples.append(self.encoder.encode(samples, it["text"], it["language"]))
            batch = collate(examples, self.pad_id)
            self.batches.append((len(items), int(batch["input_features_mask"].sum()), batch.pop("padding_efficiency")))
            return batch

    class StepClock(TrainerCallback):
        def __init__(self):
            self.t0, self.ends = 0.0, []

        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    t0, c0 = time.perf_counter(), time.process_time()
    processor = AutoProcessor.from_pretrained(base)
    model = Qwen3ASRForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    collator, clock = LibrosaCollator(processor), StepClock()
    targs = TrainingArguments(
        output_dir=str(work / "reference"), per_device_train_batch_size=batch_size, num_train_epochs=args.epochs,
        learning_rate=tr.lr, adam_beta1=tr.betas[0], adam_beta2=tr.betas[1], weight_decay=tr.weight_decay,
        optim="adamw_torch", lr_scheduler_type="cosine", warmup_steps=tr.warmup_ratio, max_grad_norm=tr.clip_norm,
        logging_steps=args.log_every, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, remove_unused_columns=False, seed=SEED)
    trainer = Trainer(model=model, args=targs, train_dataset=PlanRows(), data_collator=collator, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)
    out = trainer.train()
    trainer.save_model(str(work / "reference" / "final"))
    processor.save_pretrained(str(work / "reference" / "final"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    ends, stats, windows = [clock.t0] + clock.ends, collator.batches[:len(clock.ends)], []
    for start in range(0, len(clock.ends), args.log_every):
        stop = min(start + args.log_every, len(clock.ends))
        dt = ends[stop] - ends[start]
        clips, frames = sum(s[0] for s in stats[start:stop]), sum(s[1] for s in stats[start:stop])
        windows.append({"end_step": stop, "steps": stop - start, "seconds": dt, "samples": clips,
                        "audio_s": frames / 100, "samples_per_s": clips / dt, "audio_s_per_s": frames / 100 / dt,
                        "non_padding_frames": sum(s[2] for s in stats[start:stop]) / (stop - start)})
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return dict(steady_state(windows), wall_s=wall, cpu_s=cpu, final_loss=losses[-1] if losses else out.training_loss,
                torch_threads=torch.get_num_threads(), batch_size=batch_size, windows=windows)


def steady_state(windows: list[dict]) -> dict:
    """Rates over every window but the first; padding over all of them (weighted by steps)."""
    steady = windows[1:]
    seconds = sum(w["seconds"] for w in steady)
    steps = sum(w["steps"] for w in windows)
    return {"steps": steps, "steady_steps": sum(w["steps"] for w in steady), "steady_s": seconds,
            "samples_per_s": sum(w["samples"] for w in steady) / seconds,
            "audio_s_per_s": sum(w["audio_s"] for w in steady) / seconds,
            "non_padding_frames": sum(w["non_padding_frames"] * w["steps"] for w in windows) / steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--clips", type=int, default=400, help="train clips to synthesise (default 400; the two-stage "
                                                           "plan upsamples them about 3x)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the plan per side (default 2)")
    ap.add_argument("--quick", action="store_true", help="a short run: --clips 160 --epochs 1")
    ap.add_argument("--max-frames", type=int, default=8000, help="ours: data.max_frames_per_batch (default 8000)")
    ap.add_argument("--max-batch-size", type=int, default=16, help="ours: data.max_batch_size (default 16)")
    ap.add_argument("--bucket-window", type=int, default=256, help="ours: data.bucket_window (default 256)")
    ap.add_argument("--log-every", type=int, default=10, help="steps per log window on both sides (default 10)")
    ap.add_argument("--work", default="bench_out/train_throughput", help="data, runs and MLflow store")
    ap.add_argument("--out", default="bench_out/train_throughput.json", help="results (JSON)")
    args = ap.parse_args()
    if args.quick:
        args.clips, args.epochs = 160, 1
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    store, plan, base = build_data(work, args.clips)
    frames = clip_frames(store, base)
    batches = replay_our_batches(store, plan, frames, args.epochs, args.bucket_window, args.max_frames,
                                 args.max_batch_size)
    expected = padding_stats(batches, frames)
    plan_ids = [uid for b in batches for uid in b]
    # the 100-frame chunks of Qwen3-ASR's encoder: no batching can beat padding every clip to a whole chunk
    best = sum(frames[u][0] for u in plan_ids) / sum(frames[u][1] for u in plan_ids)
    batch_size = round(expected["mean_clips_per_step"])
    plan_rows = len(plan_ids) // args.epochs
    print(f"plan: {plan_rows} rows x {args.epochs} epochs; ours: {expected['steps']} steps of "
          f"{expected['mean_clips_per_step']:.2f} clips on average (replayed); reference: batch size {batch_size}, "
          f"{args.epochs * math.ceil(plan_rows / batch_size)} steps", flush=True)

    # Other work on the machine skews both sides; the load averages say how quiet it was.
    load = {"before": os.getloadavg()}
    reference = run_reference(store, plan, base, work, batch_size, args)
    load["after_reference"] = os.getloadavg()
    print(f"reference: {reference['wall_s']:.1f} s", flush=True)
    ours = run_ours(store, plan, base, work, expected["steps"], args)
    load["after_ours"] = os.getloadavg()
    print(f"ours: {ours['wall_s']:.1f} s", flush=True)
    # the replay is right if it predicts each logged window's padding
    ours["replay_max_window_error"] = max(
        abs(w["non_padding_frames"] - sum(non_padding(b, frames) for b in batches[w["end_step"] - w["steps"]:w["end_step"]])
            / w["steps"]) for w in ours["windows"])

    ratio = ours["audio_s_per_s"] / reference["audio_s_per_s"]
    result = {
        "setup": {"clips": args.clips, "plan_rows": plan_rows, "epochs": args.epochs,
                  "audio_hours_per_epoch": sum(frames[u][0] for u in plan_ids) / 100 / 3600 / args.epochs,
                  "ours_knobs": {"max_frames_per_batch": args.max_frames, "max_batch_size": args.max_batch_size,
                                 "bucket_window": args.bucket_window},
                  "reference_batch_size": batch_size, "log_every": args.log_every,
                  "ours_replayed": expected, "best_possible_non_padding_frames": best, "load_average": load},
        "ours": ours, "reference": reference, "audio_s_per_s_ratio": ratio,
        "targets": {"audio_s_per_s_ratio_ge_1.3": ratio >= 1.3, "ours_non_padding_ge_0.90": ours["non_padding_frames"] >= 0.9},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    print(f"\n{plan_rows} plan rows x {args.epochs} epochs ({result['setup']['audio_hours_per_epoch'] * 60:.1f} audio-min "
          f"per epoch); steady state = all log windows of {args.log_every} steps but the first\n")
    print("| side | steps | clips/step | samples/s | audio-s/s | non-padding frames | steady (s) | wall (s) | vs reference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in (("reference: HF Trainer, librosa collator", reference), ("ours: Ray Train + Ray Data", ours)):
        print(f"| {label} | {r['steps']} | {sum(w['samples'] or 0 for w in r['windows'][1:]) / r['steady_steps']:.1f} | "
              f"{r['samples_per_s']:.1f} | {r['audio_s_per_s']:.1f} | {r['non_padding_frames']:.1%} | "
              f"{r['steady_s']:.1f} | {r['wall_s']:.1f} | {r['audio_s_per_s'] / reference['audio_s_per_s']:.2f}x |")
    print(f"\naudio-s/s ours / reference: {ratio:.2f}x (target >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'}); "
          f"ours non-padding frames {ours['non_padding_frames']:.1%} (target >= 90%: "
          f"{'met' if ours['non_padding_frames'] >= 0.9 else 'NOT met'}; the encoder's 100-frame chunks cap it at "
          f"{best:.1%}); ray.init {ours['ray_init_s']:.1f} s, not in ours' wall")
    print(f"final loss: reference {reference['final_loss']:.3f} (mean over the run), ours {ours['final_loss']:.3f} "
          f"(last window); results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
