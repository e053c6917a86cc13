"""Two ways a training step does less work for the same result: the loss only where there is an answer, and
the audio encoder's convolutions in channels-last memory layout.

**Answer-only loss** (``answer_loss``). transformers' causal-LM loss projects every position of the sequence
onto the vocabulary and then ignores all but the answer's (labels -100). A Qwen3-ASR example is mostly audio
placeholders (13 per second of speech), so for a 10-s clip about three quarters or more of those logits are
thrown away; with the real
vocabulary (151,936) they are also the largest activation of the step (batch x tokens x vocab, in fp32 for the
loss). Here only the hidden states that predict an answer token go through ``lm_head`` (the model's own
``logits_to_keep`` with a boolean mask), and the cross-entropy is the same mean over those tokens. Same loss
and gradients (a test checks both against the model's ``.loss``).

**Channels-last convolutions** (``use_channels_last_conv``). The encoder's front-end is three 3x3 stride-2
``Conv2d`` layers over 1-s chunks of the mel spectrogram. oneDNN (CPU) runs them faster with channels-last
weights, which makes the activations channels-last too: 0-15% less time per training step of the tiny model on
2 CPU cores depending on the clips (2-7% on the benchmark's mix; both changes together 6-12%, BENCHMARKS.md).
On GPUs cuDNN's tensor-core kernels prefer that layout as well; not measured there yet. The weights keep their
values; ``save_pretrained`` writes them as usual. Not used under DeepSpeed, whose ZeRO flattens parameters as
plain contiguous views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .prompts import IGNORE_INDEX


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the positions whose next token is an answer token, those target tokens, row-major)."""
    nxt = labels[:, 1:]
    wanted = nxt != IGNORE_INDEX
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = wanted
    return keep, nxt[wanted]


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of ``batch`` (the model's inputs plus ``labels``): the value
    of ``model(**batch).loss``, with ``lm_head`` applied to the answer positions only."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    keep, targets = answer_positions(batch["labels"])
    if targets.numel() == 0:
        raise ValueError("answer_loss: the batch has no answer tokens (every label is -100)")
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits  # (answer tokens, vocab)
    return F.cross_entropy(logits.float(), targets)


def use_channels_last_conv(model: torch.nn.Module) -> int:
    """Put the 2-D convolutions of ``model`` (Qwen3-ASR's audio front-end) in channels-last layout; returns
    how many."""
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
            n += 1
    return n
