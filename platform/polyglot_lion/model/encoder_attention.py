"""Batched window attention for Qwen3-ASR's audio encoder (``model.encoder_attention: batched``).

The encoder attends within windows of about 8 s. Without flash attention, transformers' ``Qwen3ASRAudioAttention``
reads the window lengths back to the host (``lengths.tolist()``) in every layer and calls attention once per
window in a Python loop: thousands of small kernels and hundreds of host syncs per training step on a GPU (the
profile in BENCHMARKS.md). Here the packed frames of all windows are scattered into one
(windows, heads, longest window, head_dim) batch and attended in ONE ``scaled_dot_product_attention`` call
with a key-padding mask. The result is the same (a test checks outputs and gradients against the loop). The
layout (``window_layout``: each frame's window and position, the key mask) is either passed in, made on the host
by ``host_layout.host_inputs`` (the training loop's path: no host read, no graph break in a compiled layer), or
else computed once per forward by ``_layout`` and shared by all layers (they receive the same ``cu_seqlens``).

Enabled per model instance (``use_batched_encoder_attention``), never by patching the class: other models in
the same process keep transformers' forward. With flash attention the encoder already runs varlen kernels,
and it is left alone.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@torch.compiler.disable  # reads one length back to the host: under torch.compile a deliberate, quiet graph break
def _layout(cache: dict, cu_seqlens: torch.Tensor, n_frames: int, max_seqlen: int | None = None) -> dict:
    if cache.get("cu") is not cu_seqlens:  # a new forward (the cache holds the tensor, so its id is not reused)
        # the widest window: given by the caller (``host_layout``), else the one host sync of the forward
        width = max_seqlen if isinstance(max_seqlen, int) else int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        win, pos, mask = window_layout(cu_seqlens, width, n_frames)
        cache.clear()
        cache.update(cu=cu_seqlens, win=win, pos=pos, mask=mask, n=mask.shape[0], w=width)
    return cache


def window_layout(cu_seqlens: torch.Tensor, max_seqlen: int,
                  n_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(window of each packed frame, its position in that window, (windows, 1, 1, max_seqlen) key mask) for
    windows bounded by ``cu_seqlens``, on its device; ``n_frames`` (else read from ``cu_seqlens``) is the packed
    frame count. Made once per forward by ``_layout``, or ahead on the host by ``host_layout.host_inputs`` and
    passed in as ``window_layout``, so a compiled layer has no graph break."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    device = cu_seqlens.device
    n_frames = int(cu_seqlens[-1]) if n_frames is None else n_frames
    win = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths, output_size=n_frames)
    pos = torch.arange(n_frames, device=device) - cu_seqlens[:-1].long()[win]
    return win, pos, (torch.arange(max_seqlen, device=device) < lengths[:, None])[:, None, None, :]


def batched_window_attention(self, cache: dict, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                             max_seqlen: int | None = None, window_layout=None, **kwargs) -> torch.Tensor:
    """Drop-in for ``Qwen3ASRAudioAttention.forward`` (bound to one module, with the model's shared ``cache``).
    ``window_layout``: ``window_layout(cu_seqlens, max_seqlen)`` made ahead, else it is made here once per
    forward (a graph break under torch.compile)."""
    n_frames = hidden_states.shape[0]
    if window_layout is not None:
        win, pos, mask = window_layout
        lay = {"win": win, "pos": pos, "mask": mask, "n": mask.shape[0], "w": mask.shape[-1]}
    else:
        lay = _layout(cache, cu_seqlens, n_frames, max_seqlen)

    def padded(x: torch.Tensor) -> torch.Tensor:  # (frames, heads * dim) -> (windows, heads, width, dim)
        x = x.reshape(n_frames, self.num_heads, -1)
        out = x.new_zeros(lay["n"], lay["w"], self.num_heads, x.shape[-1])
        out[lay["win"], lay["pos"]] = x
        return out.transpose(1, 2)

    q, k, v = (padded(proj(hidden_states)) for proj in (self.q_proj, self.k_proj, self.v_proj))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=lay["mask"], scale=self.scaling)
    out = out.transpose(1, 2)[lay["win"], lay["pos"]]  # back to packed (frames, heads, dim)
    return self.out_proj(out.reshape(n_frames, -1))


def use_batched_encoder_attention(model: torch.nn.Module) -> int:
    """Switch the audio encoder's attention modules of ``model`` to the batched form; returns how many."""
    from transformers.models.qwen3_asr.modeling_qwen3_asr import Qwen3ASRAudioAttention

    cache: dict = {}
    n = 0
    for module in model.modules():
        if isinstance(module, Qwen3ASRAudioAttention):
            if "flash" in str(module.config._attn_implementation):
                continue
            module.forward = functools.partial(batched_window_attention, module, cache)
            module.takes_window_layout = True
            n += 1
    return n
