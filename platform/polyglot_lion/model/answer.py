"""The answer tokens of a training batch: where they are, what they are, and the loss over them.

**Answer-only loss** (``answer_loss``). transformers' causal-LM loss projects every position of the sequence
onto the vocabulary and then ignores all but the answer's (labels -100). A Qwen3-ASR example is mostly audio
placeholders (13 per second of speech), so for a 10-s clip about three quarters or more of those logits are
thrown away; with the real vocabulary (151,936) they are also the largest activation of the step (batch x tokens
x vocab, in fp32 for the loss). Here only the hidden states that predict an answer token go through ``lm_head``
(the model's own ``logits_to_keep`` with a boolean mask), and the cross-entropy is the same mean over those
tokens. Same loss and gradients (a test checks both against the model's ``.loss``).

``model/efficiency.py`` and ``model/host_layout.py`` both build on this module; it imports neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .prompts import IGNORE_INDEX

#: set on a model's inner ``Qwen3ASRModel`` by ``host_layout.use_host_layout``
HOST_LAYOUT_FLAG = "_host_layout"


def unwrap(model):
    """The model a DDP or DeepSpeed wrapper holds (the model itself when unwrapped)."""
    while hasattr(model, "module"):
        model = model.module
    return model


def uses_host_layout(model) -> bool:
    """Whether ``host_layout.use_host_layout`` was applied to ``model`` (or the model a wrapper holds)."""
    return getattr(unwrap(model).model, HOST_LAYOUT_FLAG, False)


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the positions whose next token is an answer token, those target tokens, row-major)."""
    nxt = labels[:, 1:]
    wanted = nxt != IGNORE_INDEX
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = wanted
    return keep, nxt[wanted]


def answer_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((batch, K) positions whose next token is an answer token, (batch, K) those tokens), K the most answer
    tokens of any row; shorter rows are padded with position 0 and target -100 (ignored by the loss). The
    positions are ``answer_positions``', per row."""
    keep, _ = answer_positions(labels)
    k = int(keep.sum(1).max()) if labels.shape[0] else 0
    index = torch.zeros(labels.shape[0], k, dtype=torch.long)
    targets = torch.full((labels.shape[0], k), IGNORE_INDEX, dtype=torch.long)
    for i in range(labels.shape[0]):
        pos = keep[i].nonzero().squeeze(1)
        index[i, : len(pos)], targets[i, : len(pos)] = pos, labels[i, pos + 1]
    return index, targets


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of ``batch`` (the model's inputs plus ``labels``): the value
    of ``model(**batch).loss``, with ``lm_head`` applied to the answer positions only. ``batch`` may also be
    ``host_layout.host_inputs(...)`` (answer positions and targets instead of ``labels``): then nothing in the
    step reads the device back but the encoder's one ``nonzero``."""
    if "answer_index" in batch:  # host_layout.host_inputs: positions and targets gathered by index, no host read
        if not uses_host_layout(model):
            raise ValueError("answer_loss: the batch comes from host_layout.host_inputs, but the model does not take "
                             "it; call host_layout.use_host_layout(model) first")
        inputs = {k: v for k, v in batch.items() if k not in ("answer_index", "answer_targets")}
        logits = model(**inputs, logits_to_keep=batch["answer_index"], use_cache=False).logits  # (batch, K, vocab)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["answer_targets"].flatten(),
                               ignore_index=IGNORE_INDEX)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    keep, targets = answer_positions(batch["labels"])
    if targets.numel() == 0:
        raise ValueError("answer_loss: the batch has no answer tokens (every label is -100)")
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits  # (answer tokens, vocab)
    return F.cross_entropy(logits.float(), targets)
