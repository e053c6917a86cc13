"""What one training step is made of: the model prepared for training, AdamW and its schedule, the loss of a
micro-batch and the optimizer step. The loop (``loop.py``) and ``benchmarks/gpu_train.py`` share them."""

from __future__ import annotations

import math

import torch

from ..config import ModelSection, TrainSection
from ..model.answer import answer_loss
from ..model.efficiency import MasterWeightAdamW, compile_layers, use_channels_last_conv
from ..model.encoder_attention import use_batched_encoder_attention
from ..model.host_layout import host_inputs, to_device, use_host_layout


def warmup_cosine(max_steps: int, warmup_steps: int, time_progress=None):
    """The learning-rate factor by step: linear warm-up, then cosine decay to 0 at ``max_steps``. With
    ``time_progress`` (a callable: the fraction of ``train.max_minutes`` spent, ``TimeBudget.progress``) the
    schedule is at whichever is further along, the steps or the clock."""
    def f(step: int) -> float:
        if time_progress is not None:
            step = max(step, time_progress() * max_steps)
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def precision(t: TrainSection, device: torch.device, ds_config: dict | None = None):
    """(bf16 weights, autocast, dtype of the float inputs) of a run. bf16 weights (ours with fp32 masters in
    ``MasterWeightAdamW``, or DeepSpeed's bf16 mode): no autocast, the inputs are cast instead. CPU: fp32."""
    bf16_weights = t.bf16_weights and not ds_config
    autocast = device.type == "cuda" and t.bf16 and not ds_config and not bf16_weights
    float_dtype = torch.bfloat16 if bf16_weights or (ds_config and ds_config["bf16"]["enabled"]) else torch.float32
    return bf16_weights, autocast, float_dtype


def prepare_model(model, m: ModelSection, device: torch.device, deepspeed: bool = False) -> None:
    """Make ``model`` (the one that trains: a resumed run's too) ready for training, in place and in this order:
    frozen audio encoder, activation checkpointing, batched encoder attention, host layout, moved to ``device``,
    channels-last convolutions and compiled layers (neither under DeepSpeed, which flattens the parameters)."""
    if m.freeze_audio_encoder:
        model.model.audio_tower.requires_grad_(False)
    if m.activation_checkpointing:
        model.activation_checkpointing_enable()
    if m.encoder_attention == "batched":
        use_batched_encoder_attention(model)
    if m.host_layout:
        use_host_layout(model)
    model.to(device)
    if m.channels_last_conv and not deepspeed:
        use_channels_last_conv(model)
    if m.compile and not deepspeed:
        compile_layers(model, mode=m.compile_mode)


def uses_cuda_graphs(m: ModelSection, deepspeed: bool = False) -> bool:
    """Whether the compiled layers replay as CUDA graphs (gradient buffers kept, a step mark per micro-batch)."""
    return m.compile and not deepspeed and m.compile_mode == "reduce-overhead"


def build_optimizer(params: list, t: TrainSection, device: torch.device, bf16_weights: bool = False,
                    deepspeed: bool = False, time_progress=None):
    """(AdamW, its warm-up/cosine LambdaLR) for ``params``: fused on a GPU (one kernel per step; not under
    DeepSpeed, which wraps both), ``MasterWeightAdamW`` for bf16 weights (the schedule then drives its inner
    AdamW, which steps the fp32 master copies). ``time_progress``: see ``warmup_cosine``."""
    fused = {"fused": True} if device.type == "cuda" and not deepspeed else {}
    adamw = dict(lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, **fused)
    optimizer = MasterWeightAdamW(params, **adamw) if bf16_weights else torch.optim.AdamW(params, **adamw)
    lr_factor = warmup_cosine(t.max_steps, int(t.warmup_ratio * t.max_steps), time_progress)  # of train.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(getattr(optimizer, "optimizer", optimizer), lr_factor)
    return optimizer, scheduler


def micro_batch_loss(model, batch: dict, device: torch.device, float_dtype: torch.dtype = torch.float32,
                     autocast: bool = False, host_layout: bool = True, token_multiple: int = 1,
                     frame_multiple: int = 1, graphs: bool = False) -> torch.Tensor:
    """The answer-only loss of a collated CPU ``batch``. With ``host_layout`` the sizes the forward needs come
    from the CPU batch (``model.host_layout``), so it never waits for the GPU; ``graphs``: a new micro-batch for
    the CUDA graphs, which may reuse the memory of the last one's outputs."""
    inputs = (host_inputs(batch, model, token_multiple, frame_multiple) if host_layout
              else {k: v for k, v in batch.items() if torch.is_tensor(v)})
    if graphs:
        torch.compiler.cudagraph_mark_step_begin()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        return answer_loss(model, to_device(inputs, device, float_dtype))  # lm_head on answer positions only


def optimizer_step(params: list, optimizer, scheduler=None, clip_norm: float = 0.0,
                   keep_grad_buffers: bool = False) -> torch.Tensor:
    """Clip the accumulated gradients of ``params`` (``clip_norm`` <= 0: no clipping), step the optimizer and the
    schedule, and zero the gradients (kept as buffers for CUDA graphs). Returns the gradient norm before clipping,
    on the device (no host read)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm > 0 else float("inf"))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=not keep_grad_buffers)
    return grad_norm
