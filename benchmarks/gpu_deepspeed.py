"""The real DeepSpeed ZeRO-2 and ZeRO-3 path on one GPU, without Ray: steps, checkpoint, 16-bit gather, reload.

    python benchmarks/gpu_deepspeed.py [--size 0.6b] [--stages 2,3] [--out deepspeed.json]
    python benchmarks/gpu_deepspeed.py --smoke      # tiny model, CPU, gloo, fp32, batch 2 x 2, 1 + 2 steps

What the Ray Train loop (``polyglot_lion.train.loop``) does with ``scaling.deepspeed_stage``, in one process of
a world of one: the published architecture (``polyglot_lion.model.sizes``, random init, fp32 weights that
DeepSpeed turns to bf16), the DeepSpeed config from ``polyglot_lion.train.zero.deepspeed_config`` (checked by
DeepSpeed's own parser), our torch AdamW handed to ``deepspeed.initialize`` (no fused/JIT-built optimizer),
the batched encoder attention and the host-computed layout (``model.host_layout``), inputs cast to bf16,
``engine.backward`` / ``engine.step`` with DeepSpeed owning accumulation and clipping.
torch.distributed is initialised with NCCL (gloo in --smoke) from MASTER_ADDR/MASTER_PORT, RANK=0,
WORLD_SIZE=1, LOCAL_RANK=0. Data: ``gpu_train.py``'s synthetic 5-15 s clips, bucketed into micro-batches of 8,
4 per optimizer step (the paper's 8 x 4); the same step's micro-batches are reused every step.

Each stage runs in its own subprocess (a clean process group and allocator; one stage failing leaves the
other's result). After the timed steps each stage saves a DeepSpeed checkpoint (``engine.save_checkpoint``, as
the loop does), takes the 16-bit weights (ZeRO-3: ``engine._zero3_consolidated_16bit_state_dict()``, a
gather of the partitions; ZeRO-2: the module's own state dict), writes them with ``save_pretrained``, loads
that folder into a fresh transformers model and checks every tensor matches, and that training changed the
weights. JSON per stage: loss first/last, step time, samples/s, MFU, peak memory, checkpoint and gather
results. One JSON line last (and ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu_train.py: model and batch builders

import gpu_train  # noqa: E402


def _dir_gib(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**30


def run_stage(args) -> dict:
    """One ZeRO stage in this process; returns its result dict."""
    import deepspeed
    import torch.distributed as dist
    from transformers import Qwen3ASRForConditionalGeneration

    from polyglot_lion.config import build_config
    from polyglot_lion.model.encoder_attention import use_batched_encoder_attention
    from polyglot_lion.model.host_layout import host_inputs, to_device, use_host_layout
    from polyglot_lion.model.prompts import PromptEncoder, bucket_batches, collate
    from polyglot_lion.train.zero import check_deepspeed_config, deepspeed_config

    for k, v in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(29500 + args.stage)), ("RANK", "0"),
                 ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(k, v)
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)
    device_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    result = {"stage": args.stage, "device": device_name, "deepspeed": deepspeed.__version__,
              "backend": dist.get_backend()}

    cfg = build_config({"train": {"grad_accum": args.grad_accum, "lr": args.lr, "bf16": True},
                        "data": {"max_batch_size": args.batch_size},
                        "scaling": {"use_gpu": cuda, "deepspeed_stage": args.stage}}, check_paths=False)
    ds_config = deepspeed_config(cfg)
    result["ds_parsed"] = check_deepspeed_config(ds_config)
    bf16 = ds_config["bf16"]["enabled"]
    float_dtype = torch.bfloat16 if bf16 else torch.float32

    model, processor = gpu_train.build_model(args.size, args.smoke, args.seed)
    model.to(device).train()
    use_batched_encoder_attention(model)  # as the loop (model.encoder_attention: batched, model.host_layout)
    use_host_layout(model)
    config = model.config
    result["params"] = sum(p.numel() for p in model.parameters())
    probe_name = next(n for n, p in model.named_parameters() if n.endswith("q_proj.weight"))
    probe_init = dict(model.named_parameters())[probe_name].detach().to("cpu", float_dtype).clone()

    encoder = PromptEncoder(processor)
    n_clips = args.batch_size * args.grad_accum
    examples = gpu_train.synthetic_examples(encoder, n_clips, args.min_seconds, args.max_seconds,
                                            args.text_tokens_per_s, config.text_config.vocab_size, args.seed)
    lengths = [e.features.shape[1] for e in examples]
    groups = bucket_batches(lengths, max_frames=args.batch_size * max(lengths), max_batch_size=args.batch_size,
                            seed=args.seed, window=n_clips)
    micro_batches = [collate([examples[i] for i in g], processor.tokenizer.pad_token_id) for g in groups]
    result["micro_batches_per_step"] = len(micro_batches)
    if len(micro_batches) != args.grad_accum:  # DeepSpeed steps every grad_accum micro-batches, whatever they hold
        raise SystemExit(f"bucketing gave {len(micro_batches)} micro-batches, expected {args.grad_accum}")
    step_flops = sum(gpu_train.training_flops(config, b) for b in micro_batches)
    step_audio_s = sum(float(b["input_features_mask"].sum()) / 100.0 for b in micro_batches)
    micro_batches = [host_inputs(b, model) for b in micro_batches]  # the loop does this per micro-batch, on the CPU

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                                  weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    t0 = time.perf_counter()
    engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=ds_config)
    result["initialize_s"] = time.perf_counter() - t0
    result["zero_stage"] = engine.zero_optimization_stage()
    result["optimizer_class"] = type(optimizer).__name__

    from polyglot_lion.model.answer import answer_loss

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def optimizer_step() -> tuple[float, float]:
        total = 0.0
        for batch in micro_batches:
            inputs = to_device(batch, device, float_dtype)
            loss = answer_loss(engine, inputs)  # the loop's loss (lm_head on the answer positions only)
            engine.backward(loss)
            engine.step()
            total += loss.detach()
        return float(total) / len(micro_batches), float(engine.get_global_grad_norm() or 0.0)

    losses = []
    for _ in range(args.warmup_steps):
        losses.append(optimizer_step()[0])
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss, grad_norm = optimizer_step()
        losses.append(loss)
    sync()
    elapsed = time.perf_counter() - t0
    peak = args.peak_tflops or (gpu_train.peak_tflops(device_name) if cuda else None)
    tflops = step_flops * args.steps / elapsed / 1e12
    result.update({
        "optimizer_steps": engine.global_steps, "warmup_steps": args.warmup_steps, "timed_steps": args.steps,
        "batch_size": args.batch_size, "grad_accum": args.grad_accum, "dtype": "bf16" if bf16 else "fp32",
        "clip_seconds": [args.min_seconds, args.max_seconds], "losses": losses,
        "loss_first": losses[0], "loss_last": losses[-1], "grad_norm_last": grad_norm,
        "step_s": elapsed / args.steps, "samples_per_s": n_clips * args.steps / elapsed,
        "audio_s_per_s": step_audio_s * args.steps / elapsed, "model_tflops_per_s": tflops, "peak_tflops": peak,
        "mfu": tflops / peak if peak else None,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) if cuda
                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30,
        "memory_source": "cuda_max_allocated" if cuda else "cpu_max_rss",
    })
    print(f"ZeRO-{args.stage}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, {result['step_s']:.3f} s/step, "
          f"{result['samples_per_s']:.1f} samples/s, {tflops:.1f} TFLOP/s"
          + (f" = {result['mfu']:.1%} MFU" if peak else "") + f", peak {result['peak_memory_gib']:.1f} GiB",
          flush=True)

    # --- checkpoint, 16-bit weights, reload into a fresh transformers model -----------------------------------
    root = tempfile.mkdtemp(prefix=f"zero{args.stage}_", dir=args.ckpt_dir)
    try:
        t0 = time.perf_counter()
        engine.save_checkpoint(os.path.join(root, "deepspeed"), tag="deepspeed")
        result["checkpoint_save_s"] = time.perf_counter() - t0
        result["checkpoint_gib"] = _dir_gib(os.path.join(root, "deepspeed"))
        t0 = time.perf_counter()
        if engine.zero_optimization_stage() == 3:
            state_dict = engine._zero3_consolidated_16bit_state_dict()
        else:
            state_dict = {k: v.detach().cpu() for k, v in engine.module.state_dict().items()}
        result["gather_s"] = time.perf_counter() - t0
        hf_dir = os.path.join(root, "hf")
        t0 = time.perf_counter()
        # a copy: save_pretrained may rename or drop entries of the dict it is given
        engine.module.save_pretrained(hf_dir, state_dict=dict(state_dict))
        result["save_pretrained_s"] = time.perf_counter() - t0
        result["hf_folder_gib"] = _dir_gib(hf_dir)
        t0 = time.perf_counter()
        fresh = Qwen3ASRForConditionalGeneration.from_pretrained(hf_dir, dtype=float_dtype)
        result["load_s"] = time.perf_counter() - t0
        fresh_sd = fresh.state_dict()
        dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state_dict.values()})
        missing = [k for k in fresh_sd if k not in state_dict]
        mismatched = [k for k in fresh_sd if k in state_dict
                      and not torch.equal(fresh_sd[k].cpu(), state_dict[k].cpu().to(fresh_sd[k].dtype))]
        changed = (state_dict[probe_name].cpu().to(float_dtype) != probe_init).float().mean().item()
        result.update({
            "state_dict_tensors": len(state_dict), "state_dict_dtypes": dtypes,
            "state_dict_numel": sum(v.numel() for v in state_dict.values()),
            "fresh_model_tensors": len(fresh_sd), "missing_in_gathered": missing[:10], "n_missing": len(missing),
            "mismatched": mismatched[:10], "n_mismatched": len(mismatched),
            "probe": probe_name, "probe_changed_fraction": changed,
            "gather_load_ok": not mismatched and not missing and changed > 0,
        })
        print(f"ZeRO-{args.stage}: checkpoint {result['checkpoint_gib']:.2f} GiB in {result['checkpoint_save_s']:.1f} s; "
              f"16-bit weights ({len(state_dict)} tensors, {dtypes}) gathered in {result['gather_s']:.1f} s, "
              f"reloaded: {len(mismatched)} mismatched, {len(missing)} missing, probe changed "
              f"{changed:.1%} -> gather_load_ok={result['gather_load_ok']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    dist.destroy_process_group()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--size", choices=["0.6b", "1.7b"], default="0.6b", help="real architecture to build")
    ap.add_argument("--stages", default="2,3", help="ZeRO stages to run, each in its own subprocess")
    ap.add_argument("--stage", type=int, choices=[2, 3], default=None, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--batch-size", type=int, default=8, help="clips per micro-batch (paper: 8)")
    ap.add_argument("--grad-accum", type=int, default=4, help="micro-batches per optimizer step (paper: 4)")
    ap.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed optimizer steps first")
    ap.add_argument("--min-seconds", type=float, default=5.0, help="shortest synthetic clip")
    ap.add_argument("--max-seconds", type=float, default=15.0, help="longest synthetic clip")
    ap.add_argument("--text-tokens-per-s", type=float, default=4.0, help="transcript tokens per second of audio")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (constant)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the card's peak bf16 TFLOP/s")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and data")
    ap.add_argument("--ckpt-dir", default=None, help="where checkpoints are written (and deleted); default: TMPDIR")
    ap.add_argument("--stage-timeout", type=float, default=240.0, help="seconds before a stage's process is killed")
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model on CPU, gloo, fp32, 1-2 s clips, batch 2 x 2, 1 warm-up + 2 steps")
    args = ap.parse_args()
    if args.smoke:
        args.batch_size, args.grad_accum, args.steps, args.warmup_steps = 2, 2, 2, 1
        args.min_seconds, args.max_seconds = 1.0, 2.0
        torch.set_num_threads(1)

    if args.stage is not None:  # child: one stage, JSON to --out even when it fails
        try:
            result = run_stage(args)
        except BaseException as e:  # noqa: BLE001 - report any failure, SystemExit included
            traceback.print_exc()
            result = {"stage": args.stage, "error": f"{type(e).__name__}: {e}"[:2000]}
        with open(args.out, "w") as f:
            json.dump(result, f)
        sys.exit(0 if "error" not in result else 1)

    stages = [int(s) for s in args.stages.split(",")]
    results = []
    child_args = [a for a in sys.argv[1:]]
    for i in range(len(child_args)):  # drop the parent's --out/--stages (and their values) from the child's argv
        if child_args[i] in ("--out", "--stages"):
            child_args[i] = child_args[i + 1] = None
    child_args = [a for a in child_args if a is not None and not a.startswith(("--out=", "--stages="))]
    for stage in stages:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            path = tmp.name
        cmd = [sys.executable, os.path.abspath(__file__), *child_args, "--stage", str(stage), "--out", path]
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, timeout=args.stage_timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        wall = time.perf_counter() - t0
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            res = {"stage": stage, "error": f"process ended ({rc}) without a result"}
        os.unlink(path)
        res.update({"returncode": rc, "process_wall_s": wall, "ok": rc == 0 and "error" not in res})
        results.append(res)
        print(f"ZeRO-{stage}: {'ok' if res['ok'] else 'FAILED: ' + str(res.get('error'))} ({wall:.0f} s)", flush=True)

    out = {"benchmark": "gpu_deepspeed", "size": "tiny" if args.smoke else args.size, "smoke": args.smoke,
           "stages": results, "all_ok": all(r["ok"] for r in results)}
    line = json.dumps(out)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    sys.exit(0 if out["all_ok"] else 1)


if __name__ == "__main__":
    main()
