"""Transcription speed of the real Qwen3-ASR-0.6B architecture on one GPU with the decode engine: audio-s/s
batched and the latency of one 10-s clip, against issue 25's goals.

    python benchmarks/gpu_inference.py [--batch-sizes 1,16,64,128] [--out inference.json]    # one command, < 10 min
    python benchmarks/gpu_inference.py --smoke      # tiny model, CPU, eager, batch 1 and 2: what the test suite runs

The model is the published 0.6B architecture (``polyglot_lion.model.sizes``) randomly initialised, in bf16,
decoded by ``Transcriber(engine="static")`` (``inference/engine.py``: static KV cache per batch bucket, decode
step compiled with ``mode="reduce-overhead"``, i.e. CUDA graphs; ``--engine hf`` gives transformers' generate()
for comparison). Random weights decide nothing useful about when to stop, so EOS and the loop guard are off and
every row generates exactly ``--new-tokens`` (40: ``language X<asr_text>`` plus a ~10-s transcript), greedy.
Clips are tones with a harmonic and noise, 1-30 s (uniform), 16 kHz.

Order: load and warm up (compiling the decode step and recording its CUDA graphs for the batch buckets, timed:
``warm_up_s``); then for each batch size one untimed batch and ``max(2 x batch, --min-samples)`` clips timed;
then the latency of one 10-s clip at batch 1 (median of ``--latency-runs``), for the engine and, unless
``--no-hf-latency``, for generate(). Figures: ``audio_s_per_s`` and ``s_per_sample`` end to end (the processor's
log-mel features and tokens on the CPU, the copy to the GPU, encoder, prefill, decode, the ids back) and
``generate_s_per_sample`` (without the processor). Goals: >= 2,000 audio-s/s at batch 128 (the Qwen3-ASR
authors' vLLM figure at concurrency 128) and <= 0.10 s for a 10-s clip at batch 1 (the paper's s/sample).
One JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from polyglot_lion import testing
from polyglot_lion.testing import TOKENIZER_TEXTS

GOAL_AUDIO_S_PER_S = 2000.0  # at batch 128
GOAL_LATENCY_10S = 0.10  # seconds for one 10-s clip at batch 1
PAPER_S_PER_SAMPLE = 0.10  # Polyglot-Lion-0.6B, RTX PRO 4500, as reported


def tone(seconds: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    """16 kHz mono: ``polyglot_lion.testing.tone`` (a tone with one harmonic and a little noise) from ``rng``."""
    return testing.tone(seconds, freq=freq, rng=rng)[:, 0]


def build_model(smoke: bool, seed: int, device: torch.device):
    """(model, processor): tiny for --smoke, else the real 0.6B with the tiny in-process tokenizer."""
    from transformers import Qwen3ASRForConditionalGeneration

    from polyglot_lion.model.sizes import qwen3_asr_0_6b_config
    from polyglot_lion.model.tiny import build_tiny_model, build_tiny_processor

    if smoke:
        return build_tiny_model(TOKENIZER_TEXTS, seed=seed)
    processor = build_tiny_processor(TOKENIZER_TEXTS)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ASRForConditionalGeneration(qwen3_asr_0_6b_config(processor.tokenizer))
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    return model, processor


def synthetic_clips(n: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [tone(float(rng.uniform(min_s, max_s)), float(rng.uniform(100, 300)), rng) for _ in range(n)]


def timed(tr, clips: list[np.ndarray], new_tokens: int) -> tuple[float, float]:
    """(end-to-end seconds, generate-only seconds) of one batch; checks every row got exactly ``new_tokens``."""
    t0 = time.perf_counter()
    ids, generate_s = tr.generate_ids(clips, None, new_tokens)
    wall = time.perf_counter() - t0
    assert all(len(r) == new_tokens for r in ids), f"rows of {sorted({len(r) for r in ids})} tokens"
    return wall, generate_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--batch-sizes", default="1,16,64,128", help="comma-separated sweep")
    ap.add_argument("--engine", default="static", choices=["static", "hf"], help="decoding path")
    ap.add_argument("--compile", default="auto", help="static engine's decode step: auto, default, reduce-overhead, "
                                                       "none (auto: reduce-overhead on CUDA, eager on CPU)")
    ap.add_argument("--new-tokens", type=int, default=40, help="tokens generated per sample, exactly")
    ap.add_argument("--min-samples", type=int, default=8, help="fewest timed clips per batch size")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="shortest synthetic clip")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="longest synthetic clip")
    ap.add_argument("--latency-runs", type=int, default=5, help="runs of the 10-s clip at batch 1")
    ap.add_argument("--no-hf-latency", action="store_true", help="skip generate()'s 10-s latency (reference)")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and clips")
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model on CPU, fp32, eager, 1-2 s clips, batch 1 and 2, 12 new tokens (seconds)")
    args = ap.parse_args()
    if args.smoke:
        args.batch_sizes, args.min_samples, args.min_seconds, args.max_seconds = "1,2", 2, 1.0, 2.0
        args.new_tokens, args.latency_runs = 12, 2
        torch.set_num_threads(1)  # CI's few shared cores: more threads only contend
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes must be comma-separated integers (is {args.batch_sizes!r})")
    problems = [f"--batch-sizes entries must be > 0 (are {batch_sizes})"] if min(batch_sizes) <= 0 else []
    problems += [f"--{k.replace('_', '-')} must be > 0 (is {v})" for k, v in vars(args).items()
                 if k in ("new_tokens", "min_samples", "min_seconds", "max_seconds", "latency_runs") and v <= 0]
    if args.min_seconds > args.max_seconds:
        problems.append(f"--min-seconds ({args.min_seconds}) must be <= --max-seconds ({args.max_seconds})")
    if args.compile not in ("auto", "default", "reduce-overhead", "none"):
        problems.append(f"--compile must be auto, default, reduce-overhead or none (is {args.compile!r})")
    if problems:
        ap.error("; ".join(problems))

    from polyglot_lion.inference.transcriber import Transcriber

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model, processor = build_model(args.smoke, args.seed, device)
    model.to(device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32).eval()
    common = dict(batch_size=max(batch_sizes), stop_at_eos=False, stop_on_loop=False)
    t0 = time.perf_counter()
    tr = Transcriber(model, processor, engine=args.engine, compile=None if args.compile == "none" else args.compile,
                     **common)
    load_s = time.perf_counter() - t0

    sweep = []
    for bs in batch_sizes:
        n = max(2 * bs, args.min_samples)
        clips = synthetic_clips(bs + n, args.min_seconds, args.max_seconds, args.seed + bs)
        try:
            timed(tr, clips[:bs], args.new_tokens)  # untimed: allocator, this batch's cache length
            wall = gen = audio = 0.0
            for start in range(bs, bs + n, bs):
                batch = clips[start:start + bs]
                w, g = timed(tr, batch, args.new_tokens)
                wall, gen, audio = wall + w, gen + g, audio + sum(len(c) for c in batch) / 16_000
        except torch.cuda.OutOfMemoryError:
            print(f"batch {bs}: out of memory, sweep stopped")
            torch.cuda.empty_cache()
            break
        point = {"batch_size": bs, "samples": n, "audio_s": audio, "audio_s_per_s": audio / wall,
                 "s_per_sample": wall / n, "generate_s_per_sample": gen / n,
                 "new_tokens_per_s": n * args.new_tokens / gen}
        sweep.append(point)
        print(f"batch {bs:3d}: {point['audio_s_per_s']:8.1f} audio-s/s, {point['s_per_sample']:.4f} s/sample end to "
              f"end, {point['generate_s_per_sample']:.4f} generate ({n} clips, {audio:.0f} s of audio)")
    if not sweep:
        raise SystemExit("no batch size fitted in memory")

    clip10 = synthetic_clips(1, 10.0, 10.0, args.seed + 10)
    latency = {}
    latency_engines = [("engine", tr)]
    if not args.no_hf_latency and args.engine != "hf":
        latency_engines.append(("hf", Transcriber(model, processor, engine="hf", **common)))
    for name, t in latency_engines:
        timed(t, clip10, args.new_tokens)
        latency[name] = statistics.median(timed(t, clip10, args.new_tokens)[0] for _ in range(args.latency_runs))
        print(f"10-s clip, batch 1, {name}: {latency[name]:.4f} s")

    b128 = next((p for p in sweep if p["batch_size"] == 128), None)
    result = {
        "benchmark": "gpu_inference", "size": "tiny" if args.smoke else "0.6b", "smoke": args.smoke,
        "device": device_name, "dtype": str(model.dtype).removeprefix("torch."), "engine": args.engine,
        "compile": tr.engine.compile_mode if tr.engine else None, "load_s": load_s, "warm_up_s": tr.warm_up_s,
        "params": sum(p.numel() for p in model.parameters()), "new_tokens": args.new_tokens,
        "clip_seconds": [args.min_seconds, args.max_seconds], "sweep": sweep,
        "latency_10s_s": latency["engine"], "latency_10s_hf_s": latency.get("hf"),
        "audio_s_per_s_b128": b128["audio_s_per_s"] if b128 else None,
        "goal_audio_s_per_s_b128": GOAL_AUDIO_S_PER_S, "goal_latency_10s_s": GOAL_LATENCY_10S,
        "paper_s_per_sample": PAPER_S_PER_SAMPLE,
        "meets_throughput_goal": bool(b128 and b128["audio_s_per_s"] >= GOAL_AUDIO_S_PER_S),
        "meets_latency_goal": latency["engine"] <= GOAL_LATENCY_10S,
    }
    print(f"{result['size']} on {device_name}, engine {args.engine} (compile {result['compile']}), warm-up "
          f"{tr.warm_up_s:.1f} s | batch 128: "
          + (f"{b128['audio_s_per_s']:.0f} audio-s/s" if b128 else "not run")
          + f" (goal >= {GOAL_AUDIO_S_PER_S:.0f}: {'met' if result['meets_throughput_goal'] else 'not met'}) | "
          f"10-s clip at batch 1: {latency['engine']:.3f} s (goal <= {GOAL_LATENCY_10S}: "
          f"{'met' if result['meets_latency_goal'] else 'not met'})")
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
