"""DeepSpeed ZeRO for scale-out: the config built from ours, validated by DeepSpeed itself, before any worker starts.

    ds = deepspeed_config(cfg)            # a plain dict: what deepspeed.initialize(config=...) receives
    check_deepspeed_config(ds)            # DeepSpeed's own parser; raises ValueError naming the problem

The loop passes our AdamW and warm-up/cosine schedule to ``deepspeed.initialize`` (so every path trains with the
same optimiser), and DeepSpeed owns gradient accumulation, clipping, bf16 and the ZeRO partitioning.
ZeRO-2 shards optimizer state and gradients; ZeRO-3 also the weights, gathered to 16-bit on save so every
checkpoint stays a plain transformers folder that inference loads.
"""

from __future__ import annotations

from ..config import Config


def deepspeed_config(cfg: Config) -> dict:
    """Our config -> DeepSpeed's JSON config. Pure."""
    stage = cfg.scaling.deepspeed_stage
    if stage not in (2, 3):
        raise ValueError(f"scaling.deepspeed_stage={stage}: DeepSpeed runs ZeRO stage 2 or 3 (0 means plain DDP)")
    zero: dict = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 5e7,
    }
    if stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": 5e7,
                     "stage3_param_persistence_threshold": 1e5})
    else:
        zero.update({"allgather_bucket_size": 5e7})
    bf16 = bool(cfg.scaling.use_gpu and cfg.train.bf16)
    return {
        # Our batches are duration buckets of varying size; DeepSpeed only uses this for its bookkeeping.
        "train_micro_batch_size_per_gpu": cfg.data.fixed_batch_size or cfg.data.max_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "gradient_clipping": cfg.train.clip_norm,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # our torch AdamW, not DeepSpeed's fused one
        "wall_clock_breakdown": False,
        "steps_per_print": 10**9,  # we log ourselves
    }


def check_deepspeed_config(ds: dict) -> dict:
    """Parse ``ds`` with DeepSpeed's own config class; ValueError naming what is wrong. Returns what it read."""
    try:
        from deepspeed.runtime.config import DeepSpeedConfig  # optional dependency (polyglot-lion[deepspeed])
    except ImportError as e:
        raise ValueError("scaling.deepspeed_stage needs DeepSpeed: pip install 'polyglot-lion[deepspeed]' "
                         f"({e})") from None
    try:
        # DeepSpeed derives train_batch_size = micro x accumulation x world size (1 outside a process group)
        parsed = DeepSpeedConfig(dict(ds))
    except Exception as e:  # DeepSpeed raises pydantic errors and bare assertions
        raise ValueError(f"invalid DeepSpeed config: {type(e).__name__}: {e}") from None
    if parsed.zero_optimization_stage != ds["zero_optimization"]["stage"]:
        raise ValueError(f"DeepSpeed read ZeRO stage {parsed.zero_optimization_stage}, "
                         f"expected {ds['zero_optimization']['stage']}")
    return {"zero_stage": parsed.zero_optimization_stage, "bf16": parsed.bfloat16_config.enabled
            if hasattr(parsed, "bfloat16_config") else parsed.bfloat16_enabled,
            "gradient_accumulation_steps": parsed.gradient_accumulation_steps,
            "gradient_clipping": parsed.gradient_clipping}


def skip_shm_all_reduce_build() -> None:
    """On CPU, DeepSpeed's process-group set-up compiles its shared-memory all-reduce op (C++: tens of CPU-seconds
    and a compiler, once per node and Python environment) that only its tensor-parallel inference calls
    (``inference_all_reduce``); ZeRO training reduces through torch.distributed. Marking the op incompatible in
    DeepSpeed's table of compatible ops, which its ``build_shm_op`` reads, skips the build and changes nothing
    else. Call before ``deepspeed.initialize``."""
    import deepspeed.ops  # optional dependency (polyglot-lion[deepspeed]): only the scale-out path needs it

    ops = deepspeed.ops.__compatible_ops__
    if "deepspeed_shm_comm" in ops:
        ops["deepspeed_shm_comm"] = False
