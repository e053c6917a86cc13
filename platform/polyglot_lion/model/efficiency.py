"""Ways a training step does less work: the audio encoder's convolutions in channels-last layout (same result,
on by default) and, as options, bf16 weights with fp32 master copies and compiled layers (``compile_layers``).
The answer-only loss is in ``model/answer.py``. Measured speed-ups are in BENCHMARKS.md.

**Channels-last convolutions** (``use_channels_last_conv``). The encoder's front-end is three 3x3 stride-2
``Conv2d`` layers over 1-s chunks of the mel spectrogram. oneDNN (CPU) runs them faster with channels-last
weights, which makes the activations channels-last too; cuDNN's tensor-core kernels prefer that layout as well.
The weights keep their values; ``save_pretrained`` writes them as usual. Not used under DeepSpeed, whose ZeRO
flattens parameters as plain contiguous views.

**bf16 weights with fp32 master copies** (``MasterWeightAdamW``). Under autocast a model with fp32 weights
casts every weight to bf16 again in every micro-batch: on a GPU thousands of copy kernels per step. Keeping the
weights themselves in bf16 removes those casts; the optimizer then keeps an fp32 copy of each weight and updates
that, so small updates are not rounded away. Gradients accumulate over micro-batches in bf16 (in ``.grad``), as
DeepSpeed's bf16 mode does by default. Memory: 20 bytes per trained parameter (bf16 weight and gradient, fp32
master, its gradient and AdamW's two moments) against 16 with fp32 weights. The loop's ``train.bf16_weights``,
and ``benchmarks/gpu_train.py --weights bf16``.
"""

from __future__ import annotations

import torch


def use_channels_last_conv(model: torch.nn.Module) -> int:
    """Put the 2-D convolutions of ``model`` (Qwen3-ASR's audio front-end) in channels-last layout; returns
    how many."""
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
            n += 1
    return n


#: dynamo's per-function limit on compiled variants, raised by ``compile_layers`` (torch's default is 8)
RECOMPILE_LIMIT = 64
#: ``torch.compile`` modes ``compile_layers`` takes. ``reduce-overhead`` replays each compiled layer as a CUDA graph
#: (one launch per layer and shape instead of ~35 kernels; on CPU it compiles as ``default``); its gradients must
#: accumulate into kept buffers, see ``compile_layers``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def compile_layers(model: torch.nn.Module, recompile_limit: int = RECOMPILE_LIMIT, mode: str = "default") -> int:
    """``torch.compile`` each decoder and audio-encoder layer of a Qwen3-ASR ``model`` in place (regional: one
    compile serves every layer of a kind, and the state dict keeps its names); returns how many. Compiling is
    lazy: the first forward of each variant pays it.

    Shapes are symbolic from the first compile (``dynamic=True``), so a batch of new lengths reuses the compiled
    graphs; only a new *kind* of batch compiles again (a batch of one clip, a decoder with or without a padding
    mask). Without it dynamo specialises on the first batch's shapes and recompiles at the second. The encoder
    and decoder layers run through one transformers wrapper (``forward_with_checkpointing``), so all their
    variants share one dynamo cache, whose default limit of 8 variants a run of bucketed batches exceeds (dynamo
    then runs the extra variants eagerly, without saying so again). ``recompile_limit`` raises that process-wide
    limit (never lowers it).

    ``mode="reduce-overhead"`` (CUDA graphs; one recording per layer and shape, so it pays off only where shapes
    repeat): call ``torch.compiler.cudagraph_mark_step_begin()`` before each micro-batch, and keep the gradient
    buffers between steps (``zero_grad(set_to_none=False)``, buffers allocated before the first backward, e.g. by
    ``keep_grad_buffers``). Otherwise autograd stores the first micro-batch's weight gradients as the graphs' own
    output memory, which the next replay overwrites: accumulated gradients come out wrong, silently in one
    report, as an error in another (pytorch/pytorch#96693, #169545)."""
    import torch._dynamo

    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_layers: mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, recompile_limit)
    if mode == "reduce-overhead":  # one recording per layer instance (own weights) and shape: many are expected
        import torch._inductor.config as inductor_config

        triton = inductor_config.triton
        triton.cudagraph_unexpected_rerecord_limit = max(triton.cudagraph_unexpected_rerecord_limit, 1024)
    layers = (*model.model.language_model.layers, *model.model.audio_tower.layers)
    for layer in layers:
        layer.compile(dynamic=True, mode=mode)
    return len(layers)


def keep_grad_buffers(params) -> int:
    """Give every parameter of ``params`` that has none a zero ``.grad`` buffer; returns how many. With buffers
    that already exist autograd adds each micro-batch's gradient into them in place, so a gradient produced in a
    CUDA graph's memory is read, never kept (see ``compile_layers``). Pair with ``zero_grad(set_to_none=False)``."""
    n = 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
            n += 1
    return n


class MasterWeightAdamW:
    """AdamW for a model whose weights are bf16 (or fp16): it updates fp32 master copies of them and writes
    the result back, rounded, into the model's weights.

    ``step()``: the weights' gradients are copied into the masters' fp32 gradients (one ``foreach`` copy), torch's
    AdamW steps the masters (``adamw_kwargs`` as for ``torch.optim.AdamW``, e.g. ``fused=True`` on a GPU), and
    the masters are copied back into the weights. Clip the weights' gradients before ``step()`` as usual.
    ``param_groups`` are the inner AdamW's, so an LR scheduler can wrap ``.optimizer``. Make it while the weights
    are still fp32 and then cast the model (``module.to`` keeps the parameter objects): the masters then start
    from the full-precision weights, not from their bf16 rounding.
    """

    def __init__(self, params, **adamw_kwargs):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("MasterWeightAdamW: no parameters to optimise")
        with torch.no_grad():
            self.masters = [p.detach().float().clone() for p in self.params]
        self._grads = [torch.zeros_like(m) for m in self.masters]
        self.optimizer = torch.optim.AdamW(self.masters, **adamw_kwargs)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @torch.no_grad()
    def step(self) -> None:
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        torch._foreach_copy_([self._grads[i] for i in have], [self.params[i].grad for i in have])
        for i, m in enumerate(self.masters):
            m.grad = self._grads[i] if self.params[i].grad is not None else None  # no gradient: AdamW skips it
        self.optimizer.step()
        torch._foreach_copy_(self.params, self.masters)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "masters": [m.detach().clone() for m in self.masters]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.masters, list(state["masters"]))
            torch._foreach_copy_(self.params, self.masters)
        self.optimizer.load_state_dict(state["optimizer"])
