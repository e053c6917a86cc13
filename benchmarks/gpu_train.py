"""Training throughput of the real Qwen3-ASR architecture on one GPU: samples/s, audio-s/s, MFU, peak memory.

    python benchmarks/gpu_train.py [--size 0.6b|1.7b] [--activation-checkpointing] [--out train.json]
    python benchmarks/gpu_train.py --smoke        # tiny model, CPU, fp32, 3 steps: what the test suite runs
    python benchmarks/gpu_train.py --profile [--steps 5]   # + where the time goes (torch.profiler, timed split)

Variants, to find what limits the step: ``--attn eager``, ``--encoder-attn loop`` (transformers' Python loop of
one attention call per 8-s window instead of the platform's one padded SDPA call for all windows),
``--no-fused-adamw``, ``--layout device`` (transformers' forward reading sizes back from the GPU ~2 x clips + 7
times per micro-batch, instead of the platform's host-computed layout, ``polyglot_lion.model.host_layout``),
``--weights bf16`` (bf16 weights with fp32 master copies in the optimizer, no autocast:
no cast of every weight in every micro-batch), ``--compile`` (``torch.compile`` per decoder/encoder layer), ``--loss full --conv-layout
default`` (the model's own loss over all positions and the default conv layout: the step before the platform's
``model/efficiency.py``), ``--no-encoder-grad`` (audio encoder frozen: a different objective, it only shows the
encoder's share; its MFU still counts the encoder's backward, so compare s/step), ``--batch-size 32
--grad-accum 1`` (same clips per step, one big micro-batch).
With ``--profile``, after the timed steps one more step is run with ``torch.cuda.synchronize`` timers around
moving the batch to the device, the encoder forward, the rest of the forward, backward, clipping and the
optimizer step, then 2 steps under ``torch.profiler`` (CPU + CUDA); both op tables (by self CUDA time and by
self CPU time), the GPU-busy time per step and the counts of kernels and host-device syncs go to the output.

The model is the published 0.6B (or 1.7B) architecture (``polyglot_lion.model.sizes``) randomly initialised in
process, fp32 master weights under bf16 autocast, AdamW, gradient clipping at 1.0 -- the loop's optimizer step
(``polyglot_lion.train.step.optimizer_step``, called here). Data is synthetic and built before timing: 5-15 s
tones with harmonics and noise (``polyglot_lion.testing.tone``) through the real feature extractor
(``PromptEncoder.features``), prompts in the checkpoint's chat format, and
answers ``language None<asr_text>`` + random token ids at ``--text-tokens-per-s`` (4/s: ~2.5 words/s of speech
at ~1.5 tokens per word) + ``<|im_end|>``. Micro-batches of 8 are bucketed by length as the platform's loader
does (``bucket_batches``); an optimizer step accumulates 4 of them (the paper's 8 x 4).

MFU = model FLOPs per second / peak dense bf16 FLOPs of the card. Model FLOPs of a micro-batch are
3 x forward (forward + backward), counting real (non-padding) tokens and audio only and no recomputation:
  decoder   2 * layer weights * tokens  +  2 * layers * (q heads * head_dim) * sum(seq_len^2)   (causal)
            + 2 * lm_head * (answer tokens with the platform's answer-only loss, all tokens with --loss full)
  encoder   conv front-end per 1-s chunk (3 stride-2 3x3 convs + conv_out), 2 * (layer weights) * frames
            + 4 * layers * d_model * sum(window_len^2) over its 8-s attention windows, + projector 2 * weights * frames
The peak comes from a table by ``torch.cuda.get_device_name`` (H100 SXM/PCIe/NVL, H200, A100, RTX PRO 6000) or
``--peak-tflops``; on CPU (smoke) the peak is unknown, so ``mfu`` is null unless ``--peak-tflops`` is given.
Warm-up steps are not timed. One JSON line is printed last (and written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from polyglot_lion import testing
from polyglot_lion.testing import TOKENIZER_TEXTS

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; first match wins.
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("A100", 312.0), ("RTX PRO 6000", 503.8)]


def tone(seconds: float, freq: float, rng: np.random.Generator) -> np.ndarray:
    """16 kHz mono: ``polyglot_lion.testing.tone`` (a tone with one harmonic and a little noise) from ``rng``."""
    return testing.tone(seconds, freq=freq, rng=rng)[:, 0]


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def build_model(size: str, smoke: bool, seed: int):
    """(model, processor): the tiny model for --smoke, else the real ``size`` with the tiny in-process tokenizer
    (its prompts drive the model; the embedding keeps the real 151,936 rows)."""
    from transformers import Qwen3ASRForConditionalGeneration

    from polyglot_lion.model.sizes import qwen3_asr_config
    from polyglot_lion.model.tiny import build_tiny_model, build_tiny_processor

    if smoke:
        return build_tiny_model(TOKENIZER_TEXTS, seed=seed)
    processor = build_tiny_processor(TOKENIZER_TEXTS)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init on the GPU: seconds instead of a minute on the CPU
        model = Qwen3ASRForConditionalGeneration(qwen3_asr_config(size, processor.tokenizer))
    return model, processor


def synthetic_examples(encoder, n: int, min_s: float, max_s: float, text_tokens_per_s: float, vocab_size: int,
                       seed: int) -> list:
    """``n`` training Examples: tone-and-noise clips through the real feature extractor, random-id transcripts."""
    from polyglot_lion.model.prompts import IGNORE_INDEX, Example

    rng = np.random.default_rng(seed)
    answer_prefix = encoder.tokenizer("language None<asr_text>", add_special_tokens=False)["input_ids"]
    first_plain_id = len(encoder.tokenizer.all_special_ids) + 8
    examples = []
    for i in range(n):
        seconds = float(rng.uniform(min_s, max_s))
        samples = tone(seconds, float(rng.uniform(100, 300)), rng)
        feats, n_frames = encoder.features(samples)
        text = rng.integers(first_plain_id, vocab_size, max(1, round(text_tokens_per_s * seconds))).tolist()
        answer = answer_prefix + text + [encoder.end_id]
        prompt = encoder.prefix + [encoder.audio_id] * encoder.audio_tokens(n_frames) + encoder.suffix
        examples.append(Example(np.array(prompt + answer, np.int64),
                                np.array([IGNORE_INDEX] * len(prompt) + answer, np.int64), feats, n_frames))
    return examples


def step_loss(model, inputs: dict, loss: str) -> torch.Tensor:
    """The platform's loss (``answer``: lm_head on the answer positions only) or the model's own (``full``)."""
    from polyglot_lion.model.answer import answer_loss

    return answer_loss(model, inputs) if loss == "answer" else model(**inputs, use_cache=False).loss


def training_flops(config, batch: dict, answer_only: bool = True) -> float:
    """Model FLOPs of forward + backward (3 x forward) for one micro-batch; see the module docstring. With
    ``answer_only`` lm_head projects only the positions that predict an answer token (``answer_loss``)."""
    from transformers.models.qwen3_asr.modeling_qwen3_asr import (
        _get_feat_extract_output_lengths,
    )

    from polyglot_lion.model.answer import answer_positions

    a, t = config.audio_config, config.text_config
    # decoder
    d_q, d_kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    dec_layer = t.hidden_size * (2 * d_q + 2 * d_kv) + 3 * t.hidden_size * t.intermediate_size
    seq = batch["attention_mask"].sum(1).double()
    head_tokens = float(answer_positions(batch["labels"])[0].sum()) if answer_only else seq.sum()
    fwd = 2 * t.num_hidden_layers * dec_layer * seq.sum() + 2 * t.num_hidden_layers * d_q * (seq ** 2).sum()
    fwd += 2 * t.hidden_size * t.vocab_size * head_tokens
    # encoder conv front-end, per 1-s chunk of 2 * n_window mel frames
    chunk = 2 * a.n_window
    freq, time_, c_in, conv = a.num_mel_bins, chunk, 1, 0
    for _ in range(3):
        freq, time_ = (freq - 1) // 2 + 1, (time_ - 1) // 2 + 1
        conv += 2 * freq * time_ * c_in * a.downsample_hidden_size * 9
        c_in = a.downsample_hidden_size
    conv += 2 * time_ * (a.downsample_hidden_size * freq) * a.d_model
    mel = batch["input_features_mask"].sum(1).long()
    fwd += conv * mel.double().sum() / chunk
    # encoder layers, attention within windows of n_window_infer mel frames, and the projector
    frames = _get_feat_extract_output_lengths(mel, a.n_window).double()
    window = (a.n_window_infer // chunk) * _get_feat_extract_output_lengths(torch.tensor(chunk), a.n_window).item()
    full, rest = torch.div(frames, window, rounding_mode="floor"), frames % window
    sum_w2 = (full * window ** 2 + rest ** 2).sum()
    enc_layer = 4 * a.d_model ** 2 + 2 * a.d_model * a.encoder_ffn_dim
    fwd += 2 * a.encoder_layers * enc_layer * frames.sum() + 4 * a.encoder_layers * a.d_model * sum_w2
    fwd += 2 * (a.d_model ** 2 + a.d_model * a.output_dim) * frames.sum()
    return 3 * float(fwd)


def main() -> None:
    from polyglot_lion.config import DataSection
    from polyglot_lion.model.efficiency import COMPILE_MODES
    from polyglot_lion.model.prompts import PromptEncoder, bucket_batches, collate
    from polyglot_lion.train.step import optimizer_step

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--size", choices=["0.6b", "1.7b"], default="0.6b", help="real architecture to build")
    ap.add_argument("--batch-size", type=int, default=8, help="clips per micro-batch (paper: 8)")
    ap.add_argument("--grad-accum", type=int, default=4, help="micro-batches per optimizer step (paper: 4)")
    ap.add_argument("--steps", type=int, default=15, help="timed optimizer steps")
    ap.add_argument("--pool-steps", type=int, default=1,
                    help="build this many optimizer steps' worth of clips, bucket them together as the loop does "
                         "(window: min(pool, data.bucket_window = 512)) and cycle through their micro-batches. "
                         "1 (default): one step's clips, reused every step (bucketing only within 8 x 4 = 32 "
                         "clips, so a 32-clip micro-batch pads ~30%%; the loop's 512-clip window pads ~3%%)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed optimizer steps first")
    ap.add_argument("--min-seconds", type=float, default=5.0, help="shortest synthetic clip")
    ap.add_argument("--max-seconds", type=float, default=15.0, help="longest synthetic clip")
    ap.add_argument("--text-tokens-per-s", type=float, default=4.0, help="transcript tokens per second of audio")
    ap.add_argument("--activation-checkpointing", action="store_true", help="recompute activations in backward")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="attention implementation")
    ap.add_argument("--encoder-attn", choices=["loop", "batched"], default="batched",
                    help="audio-encoder window attention: one padded call (the platform's default, "
                         "model.encoder_attention) or transformers' per-window loop")
    ap.add_argument("--no-fused-adamw", dest="fused_adamw", action="store_false",
                    help="plain AdamW instead of AdamW(fused=True), which the platform's loop uses on a GPU")
    ap.add_argument("--loss", choices=["answer", "full"], default="answer",
                    help="lm_head on the answer positions only (the platform's answer_loss) or on every position "
                         "(the model's own .loss)")
    ap.add_argument("--conv-layout", choices=["channels_last", "default"], default="channels_last",
                    help="memory layout of the audio front-end's convolutions (model.channels_last_conv)")
    ap.add_argument("--weights", choices=["fp32", "bf16"], default="fp32",
                    help="fp32: fp32 weights under bf16 autocast (the loop's step); bf16: bf16 weights, no autocast, "
                         "fp32 master copies in the optimizer (MasterWeightAdamW)")
    ap.add_argument("--layout", choices=["host", "device"], default=None,
                    help="host: every data-dependent size of the forward computed from the CPU batch (the loop's "
                         "model.host_layout; one host read per micro-batch); device: transformers' forward, which "
                         "reads the GPU back ~2 x clips + 7 times per micro-batch. Default: host with --loss answer, device with "
                         "--loss full (the model's own loss reads its labels on the device)")
    ap.add_argument("--no-encoder-grad", action="store_true",
                    help="freeze the audio encoder (its share of the step; not the platform's objective)")
    ap.add_argument("--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES, metavar="MODE",
                    help="torch.compile each decoder and encoder layer (regional; fuses RMSNorm, RoPE, SwiGLU and "
                         "the elementwise ops; compiled during the warm-up steps). MODE: %(choices)s (default: "
                         "default). reduce-overhead replays each layer as a CUDA graph, recorded per shape during the "
                         "warm-up; gradients then accumulate into buffers kept between steps")
    ap.add_argument("--token-multiple", type=int, default=1,
                    help="pad micro-batches to a multiple of this many tokens (host layout only; a small set of "
                         "shapes for --compile reduce-overhead; data.token_multiple)")
    ap.add_argument("--frame-multiple", type=int, default=1,
                    help="pad the encoder's packed frames to a multiple of this (host layout only; "
                         "data.frame_multiple)")
    ap.add_argument("--profile", action="store_true",
                    help="after the timed steps: one step with synchronize timers per phase, 2 under torch.profiler")
    ap.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the card's peak bf16 TFLOP/s")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and data")
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model on CPU, fp32, 1-2 s clips, batch 2 x 2, 1 warm-up + 2 steps (seconds)")
    args = ap.parse_args()
    if args.smoke:
        args.batch_size, args.grad_accum, args.steps, args.warmup_steps = 2, 2, 2, 1
        args.min_seconds, args.max_seconds = 1.0, 2.0
        torch.set_num_threads(1)  # CI's few shared cores: more threads only contend
    problems = [f"--{k.replace('_', '-')} must be > 0 (is {v})" for k, v in vars(args).items()
                if k in ("batch_size", "grad_accum", "steps", "pool_steps", "min_seconds", "max_seconds",
                         "token_multiple", "frame_multiple") and v <= 0]
    if args.min_seconds > args.max_seconds:
        problems.append(f"--min-seconds ({args.min_seconds}) must be <= --max-seconds ({args.max_seconds})")
    if args.layout is None:
        args.layout = "host" if args.loss == "answer" else "device"
    if args.layout == "host" and args.loss != "answer":
        problems.append("--layout host needs --loss answer (the model's own loss reads labels on the device); "
                        "use --layout device with --loss full")
    if args.layout == "device" and (args.token_multiple > 1 or args.frame_multiple > 1):
        problems.append("--token-multiple / --frame-multiple pad the host layout's inputs; not with --layout device")
    if problems:
        ap.error("; ".join(problems))

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    use_bf16 = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(device_name) if device.type == "cuda" else None)

    # --- model, optimizer -----------------------------------------------------------------------------------
    model, processor = build_model(args.size, args.smoke, args.seed)
    weight_dtype = torch.bfloat16 if args.weights == "bf16" else torch.float32
    model.to(device).train()  # fp32 first: MasterWeightAdamW copies its masters before the cast to bf16
    autocast = use_bf16 and args.weights == "fp32"  # bf16 weights need no autocast (and no casts per use)
    if args.attn != "sdpa":
        model.set_attn_implementation(args.attn)
    if args.encoder_attn == "batched":
        from polyglot_lion.model.encoder_attention import use_batched_encoder_attention

        use_batched_encoder_attention(model)
    if args.conv_layout == "channels_last":
        from polyglot_lion.model.efficiency import use_channels_last_conv

        use_channels_last_conv(model)
    audio_tower = model.model.audio_tower
    if args.no_encoder_grad:
        audio_tower.requires_grad_(False)
    if args.activation_checkpointing:
        model.activation_checkpointing_enable()
    if args.layout == "host":
        from polyglot_lion.model.host_layout import use_host_layout

        use_host_layout(model)
    if args.compile:  # after the attention swap and checkpointing, so the compiled layers include them
        from polyglot_lion.model.efficiency import compile_layers

        compile_layers(model, mode=args.compile)
    graphs = args.compile == "reduce-overhead"  # CUDA graphs: gradient buffers kept, a step mark per micro-batch
    n_params = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    adamw = dict(lr=args.lr, weight_decay=0.01, **({"fused": True} if args.fused_adamw and device.type == "cuda" else {}))
    if args.weights == "bf16":
        from polyglot_lion.model.efficiency import MasterWeightAdamW

        optimizer = MasterWeightAdamW(params, **adamw)
        model.to(weight_dtype)
    else:
        optimizer = torch.optim.AdamW(params, **adamw)
    if graphs:
        from polyglot_lion.model.efficiency import keep_grad_buffers

        keep_grad_buffers(params)

    # --- data: --pool-steps optimizer steps' worth of clips, bucketed into micro-batches, cycled through ------
    encoder = PromptEncoder(processor)
    n_pool = args.batch_size * args.grad_accum * args.pool_steps
    examples = synthetic_examples(encoder, n_pool, args.min_seconds, args.max_seconds, args.text_tokens_per_s,
                                  model.config.text_config.vocab_size, args.seed)
    lengths = [e.features.shape[1] for e in examples]
    groups = bucket_batches(lengths, max_frames=args.batch_size * max(lengths), max_batch_size=args.batch_size,
                            seed=args.seed, window=min(n_pool, DataSection().bucket_window))
    pool = [collate([examples[i] for i in g], processor.tokenizer.pad_token_id) for g in groups]
    # optimizer steps of grad_accum micro-batches each (the last may be short: it is then not a step)
    steps = [pool[i:i + args.grad_accum] for i in range(0, len(pool) - args.grad_accum + 1, args.grad_accum)]
    timed = [steps[i % len(steps)] for i in range(args.warmup_steps, args.warmup_steps + args.steps)]
    timed_flops = sum(training_flops(model.config, b, args.loss == "answer") for st in timed for b in st)
    timed_audio_s = sum(float(b["input_features_mask"].sum()) / 100.0 for st in timed for b in st)
    timed_samples = sum(len(b["input_ids"]) for st in timed for b in st)
    padding_efficiency = float(np.mean([b["padding_efficiency"] for st in steps for b in st]))
    if args.layout == "host":  # on the CPU, as the loop does per micro-batch (~1 ms each; not timed here)
        from polyglot_lion.model.host_layout import host_inputs

        steps = [[host_inputs(b, model, args.token_multiple, args.frame_multiple) for b in st] for st in steps]
    else:
        steps = [[{k: v for k, v in b.items() if torch.is_tensor(v)} for b in st] for st in steps]
    micro_batches = steps[0]  # what --profile profiles

    from polyglot_lion.model.host_layout import to_device as inputs_to_device

    def to_device(batch: dict) -> dict:  # float inputs (the mel features) in the weights' dtype; ints stay
        return inputs_to_device(batch, device, weight_dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def zero_grad() -> None:
        optimizer.zero_grad(set_to_none=not graphs)

    def train_step(i: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, gradient norm before clipping) of step ``i``, as device tensors: no host read in the step. The
        optimizer step is the loop's (``polyglot_lion.train.step.optimizer_step``)."""
        total = 0.0
        micro_batches = steps[i % len(steps)]
        for batch in micro_batches:
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            inputs = to_device(batch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = step_loss(model, inputs, args.loss) / len(micro_batches)
            loss.backward()
            total += loss.detach()
        return total, optimizer_step(params, optimizer, clip_norm=1.0, keep_grad_buffers=graphs)

    # --- steps ------------------------------------------------------------------------------------------------
    for i in range(args.warmup_steps):
        train_step(i)
    sync()
    from torch._dynamo.utils import counters

    frames_before = counters["frames"]["total"]  # dynamo compiles during the timed steps (0 if none: valid timing)
    # per-step times without a host read in the loop: CUDA events on a GPU (read after the last step), the
    # host clock on CPU (synchronous there). A step far above the median recorded or compiled something.
    marks = []

    def mark() -> None:
        if device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            marks.append(ev)
        else:
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    mark()
    timed_results = []
    for i in range(args.warmup_steps, args.warmup_steps + args.steps):
        timed_results.append(train_step(i))
        mark()
    sync()
    elapsed = time.perf_counter() - t0
    step_times = ([a.elapsed_time(b) / 1000 for a, b in zip(marks, marks[1:])] if device.type == "cuda"
                  else [b - a for a, b in zip(marks, marks[1:])])
    timed_compiles = counters["frames"]["total"] - frames_before
    losses = [round(float(loss), 6) for loss, _ in timed_results]
    grad_norms = [round(float(norm), 6) for _, norm in timed_results]

    profile = None
    if args.profile:
        try:
            profile = profile_steps(model, audio_tower, micro_batches, optimizer, params, to_device, autocast,
                                    device, sync, args.loss, train_step, zero_grad, graphs)
        except Exception as exc:  # keep the timed result even if the profiler fails on this torch
            import traceback

            traceback.print_exc()
            profile = {"error": repr(exc)}

    model_tflops_per_s = timed_flops / elapsed / 1e12
    if device.type == "cuda":
        peak_memory_gib, memory_source = torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    else:
        peak_memory_gib, memory_source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu_max_rss"
    result = {
        "benchmark": "gpu_train", "size": "tiny" if args.smoke else args.size, "smoke": args.smoke,
        "device": device_name, "params": n_params,
        "dtype": "bf16-weights" if args.weights == "bf16" else ("bf16-autocast" if use_bf16 else "fp32"),
        "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "activation_checkpointing": args.activation_checkpointing,
        "clip_seconds": [args.min_seconds, args.max_seconds], "padding_efficiency": round(padding_efficiency, 4),
        "warmup_steps": args.warmup_steps, "timed_steps": args.steps, "step_s": elapsed / args.steps,
        "step_s_median": statistics.median(step_times), "step_s_max": max(step_times),
        "step_times_s": [round(t, 5) for t in step_times],
        "pool_steps": args.pool_steps, "compiles_in_timed_steps": timed_compiles,
        # inductor's count of compiled graphs it ran without a CUDA graph (for --compile reduce-overhead: 0, else the
        # figures are not the graphs'; TORCH_LOGS=cudagraphs says why)
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
        "token_multiple": args.token_multiple, "frame_multiple": args.frame_multiple,
        "samples_per_s": timed_samples / elapsed, "audio_s_per_s": timed_audio_s / elapsed,
        "model_tflops_per_s": model_tflops_per_s, "peak_tflops": peak,
        "mfu": model_tflops_per_s / peak if peak else None, "peak_memory_gib": peak_memory_gib,
        "memory_source": memory_source, "final_loss": losses[-1], "losses": losses, "grad_norms": grad_norms,
        "variant": {"attn": args.attn, "encoder_attn": args.encoder_attn, "fused_adamw": args.fused_adamw,
                    "no_encoder_grad": args.no_encoder_grad, "compile": bool(args.compile),
                    "compile_mode": args.compile, "loss": args.loss,
                    "layout": args.layout,
                    "conv_layout": args.conv_layout, "weights": args.weights},
        "profile": profile,
    }
    print(f"{result['size']} on {device_name}: {result['samples_per_s']:.2f} samples/s, "
          f"{result['audio_s_per_s']:.1f} audio-s/s, {model_tflops_per_s:.1f} TFLOP/s"
          + (f" = {result['mfu']:.1%} MFU of {peak:g}" if peak else " (MFU: peak unknown)")
          + f", peak memory {peak_memory_gib:.1f} GiB ({memory_source})"
          + (f"; {timed_compiles} dynamo compiles during the timed steps: more warm-up steps?" if timed_compiles else "")
          + (f"; slowest step {result['step_s_max']:.3f} s against a median of {result['step_s_median']:.3f} s: "
             "something was recorded or compiled in the timed steps (more warm-up steps?)"
             if result["step_s_max"] > 2 * result["step_s_median"] else "")
          + (f"; {result['cudagraph_skips']} compiled graphs ran WITHOUT a CUDA graph (TORCH_LOGS=cudagraphs says why)"
             if graphs and result["cudagraph_skips"] else ""))
    if profile and "error" not in profile:
        print(profile["table_by_self_cuda"])
        print(profile["table_by_self_cpu"])
        print("split of one step (s, synchronize timers):", json.dumps(profile["split_s"]))
        print(f"profiled: {profile['wall_s_per_step']:.3f} s/step wall, GPU busy {profile['gpu_busy_s_per_step']:.3f}"
              f" s/step, {profile['kernels_per_step']} kernels/step, syncs/step {json.dumps(profile['syncs_per_step'])}")
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


def profile_steps(model, audio_tower, micro_batches, optimizer, params, to_device, autocast, device, sync,
                  loss_kind, train_step, zero_grad, graphs: bool = False, n_profiled: int = 2) -> dict:
    """One step with synchronize timers around each phase, then ``n_profiled`` steps under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    split = dict.fromkeys(["to_device", "forward_encoder", "forward_rest", "backward", "clip", "optimizer"], 0.0)
    marks = {}

    def pre_hook(module, args, kwargs):
        sync()
        marks["enc0"] = time.perf_counter()

    def post_hook(module, args, kwargs, output):
        sync()
        marks["enc1"] = time.perf_counter()

    # the encoder's first and last modules: both the encoder's own forward and host_layout's run them
    handles = [audio_tower.conv2d1.register_forward_pre_hook(pre_hook, with_kwargs=True),
               audio_tower.ln_post.register_forward_hook(post_hook, with_kwargs=True)]
    sync()
    t_step = time.perf_counter()
    for batch in micro_batches:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        t0 = time.perf_counter()
        inputs = to_device(batch)
        sync()
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = step_loss(model, inputs, loss_kind) / len(micro_batches)
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        split["to_device"] += t1 - t0
        split["forward_encoder"] += marks["enc1"] - marks["enc0"]
        split["forward_rest"] += (t2 - t1) - (marks["enc1"] - marks["enc0"])
        split["backward"] += t3 - t2
    t0 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    sync()
    t1 = time.perf_counter()
    optimizer.step()
    zero_grad()
    sync()
    split["clip"], split["optimizer"] = t1 - t0, time.perf_counter() - t1
    split["total"] = time.perf_counter() - t_step
    for h in handles:
        h.remove()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(n_profiled):
            train_step()
        sync()
    wall = (time.perf_counter() - t0) / n_profiled
    averages = prof.key_averages()

    def table(key: str) -> str:
        try:
            return averages.table(sort_by=key, row_limit=25, max_name_column_width=60)
        except (AttributeError, KeyError, ValueError):  # newer torch: "device" instead of "cuda"
            return averages.table(sort_by=key.replace("cuda", "device"), row_limit=25, max_name_column_width=60)

    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    sync_names = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::item",
                  "aten::_local_scalar_dense", "cudaMemcpyAsync")
    syncs = {name: sum(e.count for e in averages if e.key == name) / n_profiled for name in sync_names}
    return {
        "split_s": {k: round(v, 4) for k, v in split.items()},
        "profiled_steps": n_profiled, "wall_s_per_step": wall,
        "gpu_busy_s_per_step": sum(e.time_range.elapsed_us() for e in kernels) / 1e6 / n_profiled,
        "kernels_per_step": len(kernels) / n_profiled,
        "syncs_per_step": {k: v for k, v in syncs.items() if v},
        "table_by_self_cuda": table("self_cuda_time_total"),
        "table_by_self_cpu": table("self_cpu_time_total"),
    }


if __name__ == "__main__":
    main()
