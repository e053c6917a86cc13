"""Batched greedy transcription speed of the real Qwen3-ASR-0.6B architecture on one GPU, in s/sample.

    python benchmarks/gpu_inference.py [--batch-sizes 1,8,16,32,64] [--out inference.json]
    python benchmarks/gpu_inference.py --smoke      # tiny model, CPU, batch 1 and 2: what the test suite runs

The model is the published 0.6B architecture (``polyglot_lion.model.sizes``) randomly initialised, in bf16.
Random weights decide nothing useful about when to stop, so every sample generates exactly ``--new-tokens`` (40:
``language X<asr_text>`` plus a ~10 s transcript) via ``min_new_tokens = max_new_tokens``, greedy. Clips are
5-10 s tones with harmonics and noise; the processor's ``apply_transcription_request`` renders the checkpoint's
chat prompt (the in-process tokenizer's template is the Qwen3-ASR one) and left-pads the batch, as serving does.

For each batch size: one untimed warm-up batch, then ``max(2 x batch, --min-samples)`` clips timed. Two figures:
``s_per_sample`` (generate only: features on the GPU, prompt to last token) and ``s_per_sample_end_to_end``
(plus the processor: log-mel features and tokenisation on the CPU, and the copy to the GPU). The best batch size
is the one with the lowest end-to-end figure. Printed beside them: the paper's 0.10 s/sample (Polyglot-Lion-0.6B
on an RTX PRO 4500) and this platform's target, <= 0.03 s/sample batched on an H100. One JSON line last.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from polyglot_lion import testing
from polyglot_lion.testing import TOKENIZER_TEXTS

PAPER_S_PER_SAMPLE = 0.10  # Polyglot-Lion-0.6B, RTX PRO 4500, as reported
TARGET_S_PER_SAMPLE = 0.03  # batched, H100


def tone(seconds: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    """16 kHz mono: ``polyglot_lion.testing.tone`` (a tone with one harmonic and a little noise) from ``rng``."""
    return testing.tone(seconds, freq=freq, rng=rng)[:, 0]


def build_model(smoke: bool, seed: int):
    """(model, processor): tiny for --smoke, else the real 0.6B with the tiny in-process tokenizer."""
    from transformers import Qwen3ASRForConditionalGeneration

    from polyglot_lion.model.sizes import qwen3_asr_0_6b_config
    from polyglot_lion.model.tiny import build_tiny_model, build_tiny_processor

    if smoke:
        return build_tiny_model(TOKENIZER_TEXTS, seed=seed)
    processor = build_tiny_processor(TOKENIZER_TEXTS)
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen3ASRForConditionalGeneration(qwen3_asr_0_6b_config(processor.tokenizer))
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    return model, processor


def synthetic_clips(n: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [tone(float(rng.uniform(min_s, max_s)), float(rng.uniform(100, 300)), rng) for _ in range(n)]


def transcribe(model, processor, clips: list[np.ndarray], new_tokens: int) -> tuple[float, float]:
    """Greedy-decode one batch; returns (processor seconds, generate seconds)."""
    device, dtype = model.device, model.dtype
    t0 = time.perf_counter()
    inputs = processor.apply_transcription_request(clips).to(device, dtype=dtype)  # dtype: float tensors only
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t2 = time.perf_counter()
    generated = out.shape[1] - inputs["input_ids"].shape[1]
    assert generated == new_tokens, f"generated {generated} tokens, expected exactly {new_tokens}"
    return t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--batch-sizes", default="1,8,16,32,64", help="comma-separated sweep")
    ap.add_argument("--new-tokens", type=int, default=40, help="tokens generated per sample, exactly")
    ap.add_argument("--min-samples", type=int, default=8, help="fewest timed clips per batch size")
    ap.add_argument("--min-seconds", type=float, default=5.0, help="shortest synthetic clip")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="longest synthetic clip")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and clips")
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model on CPU, fp32, 1-2 s clips, batch 1 and 2, 12 new tokens (seconds)")
    args = ap.parse_args()
    if args.smoke:
        args.batch_sizes, args.min_samples, args.min_seconds, args.max_seconds = "1,2", 2, 1.0, 2.0
        args.new_tokens = 12
        torch.set_num_threads(1)  # CI's few shared cores: more threads only contend
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes must be comma-separated integers (is {args.batch_sizes!r})")
    problems = [f"--batch-sizes entries must be > 0 (are {batch_sizes})"] if min(batch_sizes) <= 0 else []
    problems += [f"--{k.replace('_', '-')} must be > 0 (is {v})" for k, v in vars(args).items()
                 if k in ("new_tokens", "min_samples", "min_seconds", "max_seconds") and v <= 0]
    if args.min_seconds > args.max_seconds:
        problems.append(f"--min-seconds ({args.min_seconds}) must be <= --max-seconds ({args.max_seconds})")
    if problems:
        ap.error("; ".join(problems))

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model, processor = build_model(args.smoke, args.seed)
    model.to(device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32).eval()

    sweep = []
    for bs in batch_sizes:
        n = max(2 * bs, args.min_samples)
        clips = synthetic_clips(bs + n, args.min_seconds, args.max_seconds, args.seed + bs)
        try:
            transcribe(model, processor, clips[:bs], args.new_tokens)  # warm-up: kernels, allocator
            prep_s = gen_s = 0.0
            for start in range(bs, bs + n, bs):
                p, g = transcribe(model, processor, clips[start:start + bs], args.new_tokens)
                prep_s, gen_s = prep_s + p, gen_s + g
        except torch.cuda.OutOfMemoryError:
            print(f"batch {bs}: out of memory, sweep stopped")
            torch.cuda.empty_cache()
            break
        point = {"batch_size": bs, "samples": n, "s_per_sample": gen_s / n,
                 "s_per_sample_end_to_end": (prep_s + gen_s) / n, "new_tokens_per_s": n * args.new_tokens / gen_s}
        sweep.append(point)
        print(f"batch {bs:3d}: {point['s_per_sample']:.4f} s/sample generate, "
              f"{point['s_per_sample_end_to_end']:.4f} end-to-end ({n} clips)")
    if not sweep:
        raise SystemExit("no batch size fitted in memory")

    best = min(sweep, key=lambda p: p["s_per_sample_end_to_end"])
    bs1 = next((p for p in sweep if p["batch_size"] == 1), None)
    result = {
        "benchmark": "gpu_inference", "size": "tiny" if args.smoke else "0.6b", "smoke": args.smoke,
        "device": device_name, "dtype": str(model.dtype).removeprefix("torch."),
        "params": sum(p.numel() for p in model.parameters()), "new_tokens": args.new_tokens,
        "clip_seconds": [args.min_seconds, args.max_seconds], "sweep": sweep,
        "s_per_sample_bs1": bs1["s_per_sample_end_to_end"] if bs1 else None,
        "best_batch_size": best["batch_size"], "s_per_sample_best": best["s_per_sample_end_to_end"],
        "s_per_sample_best_generate_only": best["s_per_sample"],
        "paper_s_per_sample": PAPER_S_PER_SAMPLE, "paper_device": "RTX PRO 4500",
        "target_s_per_sample": TARGET_S_PER_SAMPLE, "target_device": "H100",
        "meets_target": best["s_per_sample_end_to_end"] <= TARGET_S_PER_SAMPLE,
    }
    print(f"{result['size']} on {device_name}: "
          + (f"batch 1 {result['s_per_sample_bs1']:.4f} s/sample, " if bs1 else "")
          + f"best batch {best['batch_size']} {result['s_per_sample_best']:.4f} s/sample end-to-end | "
          f"paper {PAPER_S_PER_SAMPLE} s/sample (RTX PRO 4500) | target <= {TARGET_S_PER_SAMPLE} batched (H100): "
          + ("met" if result["meets_target"] else "not met"))
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
