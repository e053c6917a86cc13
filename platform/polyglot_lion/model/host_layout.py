"""A training forward that does not wait for the GPU: every data-dependent size is worked out on the host.

On a GPU, each time Python needs a value that lives on the device (``.item()``, ``int(t)``, ``if t:``, a boolean
index, ``nonzero``) the CPU waits until every queued kernel has run, and the GPU then idles while the CPU launches
the next ones: launch time and GPU time add up instead of overlapping. In transformers' Qwen3-ASR forward a
training micro-batch of n clips reads the device back about 2n + 7 times (counted on CPU with a dispatch mode;
``tests/test_model.py``): the encoder's window boundaries (``get_audio_cu_seqlens``: a ``max().item()`` and a Python
loop over the clips), the batched encoder attention's widest window, the placeholder check (a boolean index and
an f-string of a device tensor), the decoder's two padding-mask checks, and the answer-only loss's boolean masks.

The collated batch is still on the CPU when the step starts, and all of those sizes are known there.
``host_inputs(batch, model)`` adds them to the model's inputs: the encoder's window boundaries (transformers' own
``get_audio_cu_seqlens``, run on the CPU) and widest window, the flat positions of the audio placeholders, and
the positions and targets of the answer tokens, padded per row. ``use_host_layout(model)`` gives this model
instance (never the class) a ``Qwen3ASRModel.forward`` that takes them: it runs the audio tower with the given
windows and writes the audio embeddings into their positions with an index (no mask scatter, no check on the
device: the counts were checked on the host). For a batch padded at the rows' ends (``collate``'s), found so on
the host, it builds the decoder's causal + padding mask for SDPA itself, without transformers' two checks; a batch
padded otherwise keeps transformers' mask and checks. (A mask is needed even so: without one, transformers
reads the position ids back to look for packed sequences.)
``answer.answer_loss`` then gathers the answer positions by index. Same loss and gradients as the stock
forward (a test checks both).

The encoder's own forward finds its valid frames after the convolutions with a ``nonzero`` on the device; here
their positions come from the host too (``audio_frame_index``) and ``_encode_audio`` runs the same encoder
without it, so a training micro-batch reads nothing back. Without ``audio_cu_seqlens`` in its inputs the model
runs transformers' forward unchanged (inference, generation).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .answer import HOST_LAYOUT_FLAG, answer_targets, unwrap
from .encoder_attention import window_layout


def to_device(inputs: dict, device, float_dtype: torch.dtype = torch.float32) -> dict:
    """Model inputs to ``device``: tensors moved (floating ones, the mel features, in ``float_dtype``), other
    values (``host_inputs``' sizes) as they are."""
    return {k: (v.to(device, float_dtype if v.is_floating_point() else None, non_blocking=True)
                if torch.is_tensor(v) else v) for k, v in inputs.items()}


def host_inputs(batch: dict, model, token_multiple: int = 1, frame_multiple: int = 1) -> dict:
    """The model inputs of a collated CPU ``batch`` (``prompts.collate``) plus every size the forward would
    otherwise read back from the device: ``audio_cu_seqlens`` and ``audio_max_seqlen`` (the encoder's attention
    windows), ``audio_frame_index`` (flat positions of the valid frames after the encoder's convolutions),
    ``audio_positions`` (flat positions of the audio placeholders), ``answer_index`` and ``answer_targets`` (see
    ``answer.answer_targets``). ``attention_mask`` becomes ``right_padded_mask`` when the padding is at the rows' ends
    only. ``model`` gives the configuration (a wrapped model is fine).

    A grid of shapes, for CUDA graphs (one recording per shape): ``token_multiple`` pads a right-padded batch's
    rows with masked positions to a multiple of that many tokens; ``frame_multiple`` pads the encoder's packed
    frames (all clips' frames, one after another) to a multiple of that many with zero frames in windows of
    their own (``audio_pad_frames``), dropped after the encoder. Neither changes the loss or the gradients: a
    padded position is masked as a key, is never a target, and a padded frame attends only to padded frames."""
    from transformers.models.qwen3_asr.modeling_qwen3_asr import (
        Qwen3ASREncoder,
        _get_feat_extract_output_lengths,
        get_audio_cu_seqlens,
    )

    for name, value in (("token_multiple", token_multiple), ("frame_multiple", frame_multiple)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"host_inputs: {name} must be an int >= 1 (is {value!r})")

    config = unwrap(model).config
    a = config.audio_config
    fmask, ids = batch["input_features_mask"], batch["input_ids"]
    if fmask.device.type != "cpu" or ids.device.type != "cpu":
        raise ValueError("host_inputs: the batch must still be on the CPU (it is computed before moving it)")
    b, t = fmask.shape
    chunk = 2 * a.n_window
    if t % chunk:
        raise ValueError(f"host_inputs: input_features has {t} frames, not a multiple of 2 * n_window = {chunk}")
    feature_lens = fmask.sum(-1).long()
    chunk_lengths = fmask.view(b, t // chunk, chunk).sum(-1).reshape(-1).long()
    cu = get_audio_cu_seqlens(chunk_lengths, feature_lens, a.n_window_infer, a.n_window)
    positions = (ids == config.audio_token_id).flatten().nonzero().squeeze(1)
    frames = int(_get_feat_extract_output_lengths(feature_lens, a.n_window).sum())
    if positions.numel() != frames or int(cu[-1]) != frames:
        raise ValueError(f"host_inputs: the batch has {positions.numel()} audio placeholder tokens but its audio "
                         f"gives {frames} encoder frames (windows cover {int(cu[-1])}); they must be equal")
    out = {k: v for k, v in batch.items() if torch.is_tensor(v) and k != "labels"}
    if _right_padded(out["attention_mask"]):  # as ``collate`` pads: the forward may build the mask itself
        out["right_padded_mask"] = out.pop("attention_mask")
    out["answer_index"], out["answer_targets"] = answer_targets(batch["labels"])
    if out["answer_index"].shape[1] == 0:
        raise ValueError("host_inputs: the batch has no answer tokens (every label is -100)")
    width = int((cu[1:] - cu[:-1]).max())
    # the encoder's valid frames after its convolutions (each 1-s chunk gives up to ``per_chunk``), found here
    # instead of by the encoder's ``nonzero`` on the device
    per_chunk = int(Qwen3ASREncoder._post_cnn_length(torch.tensor([chunk]))[0])
    valid = torch.arange(per_chunk) < Qwen3ASREncoder._post_cnn_length(chunk_lengths)[:, None]
    frame_index = valid.flatten().nonzero().squeeze(1)
    if frame_index.numel() != frames:
        raise ValueError(f"host_inputs: the convolutions keep {frame_index.numel()} frames, the windows {frames}")
    pad = -frames % frame_multiple
    if pad:  # zero frames in windows of their own, none wider than the widest real one
        sizes = torch.tensor([width] * (pad // width) + ([pad % width] if pad % width else []))
        cu = torch.cat([cu, cu[-1] + sizes.cumsum(0).to(cu.dtype)])
    out.update(audio_cu_seqlens=cu, audio_max_seqlen=width, audio_positions=positions, audio_frame_index=frame_index,
               audio_pad_frames=pad)
    if _takes_window_layout(unwrap(model)):  # the batched encoder attention's layout too: no graph break in a layer
        out["audio_window_index"], out["audio_window_pos"], out["audio_window_mask"] = window_layout(cu, width)
    extra = -ids.shape[1] % token_multiple
    if extra and "right_padded_mask" in out:  # masked positions at the rows' ends: never attended to, no target
        out["input_ids"] = F.pad(out["input_ids"], (0, extra))  # token 0: never the audio placeholder
        out["right_padded_mask"] = F.pad(out["right_padded_mask"], (0, extra))
        out["audio_positions"] = (out["input_ids"] == config.audio_token_id).flatten().nonzero().squeeze(1)
    return out


def _right_padded(attention_mask: torch.Tensor) -> bool:
    """Each row is ones, then zeros (or all ones)."""
    m = attention_mask.bool()
    return bool((m[:, :-1] | ~m[:, 1:]).all())  # never a 0 followed by a 1


def use_host_layout(model: torch.nn.Module) -> None:
    """Let this Qwen3-ASR ``model`` take ``host_inputs`` (its inner ``Qwen3ASRModel`` instance gets the forward)."""
    inner = model.model
    if not getattr(inner, HOST_LAYOUT_FLAG, False):
        inner.forward = functools.partial(_forward, inner, inner.forward)
        setattr(inner, HOST_LAYOUT_FLAG, True)


def _causal_mask(right_padded_mask: torch.Tensor) -> torch.Tensor:
    """(batch, 1, L, L) bool, True where a query may attend (SDPA's convention): causal and not padding. With the
    padding at the rows' ends no query row is fully masked (position 0 is always real), so no NaN can arise."""
    n = right_padded_mask.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=right_padded_mask.device).tril()
    return causal[None, None] & right_padded_mask.bool()[:, None, None, :]


def _takes_window_layout(model) -> bool:
    """Whether the audio encoder's attention is the batched one (``encoder_attention``), which takes its layout."""
    layers = model.model.audio_tower.layers
    return bool(len(layers)) and getattr(layers[0].self_attn, "takes_window_layout", False)


def _conv_frames(tower, chunks: torch.Tensor) -> torch.Tensor:
    """The encoder's convolutions of (n, 1, mels, 2 * n_window) chunks: (n, steps, d_model), positions added."""
    x = F.gelu(tower.conv2d3(F.gelu(tower.conv2d2(F.gelu(tower.conv2d1(chunks))))))
    n, channels, freq, steps = x.size()
    x = tower.conv_out(x.permute(0, 3, 1, 2).contiguous().view(n, steps, channels * freq))
    return x + tower.positional_embedding.positional_embedding[:steps].to(x.dtype)


def _encode_audio(tower, input_features: torch.Tensor, frame_index: torch.Tensor, cu_seqlens: torch.Tensor,
                  max_seqlen: int, pad_frames: int = 0, window_layout=None, chunk_index: torch.Tensor | None = None,
                  conv_group: int | None = None) -> torch.Tensor:
    """transformers' ``Qwen3ASREncoder.forward`` (convolutions per 1-s chunk, the valid frames packed, windowed
    layers, final norm), with the valid frames' positions given (``frame_index``) instead of found by a
    ``nonzero`` on the device, and ``pad_frames`` zero frames run after them (their windows are in
    ``cu_seqlens``) and dropped at the end; ``window_layout`` goes to the batched attention of every layer. A test
    holds it equal to transformers' forward.

    Inference (``inference/engine.py``): ``chunk_index`` convolves only these chunks (the others hold no valid
    frame; ``frame_index`` then counts in the chunks kept), ``conv_group`` convolves that many chunks per call
    (each chunk is convolved on its own, so the frames are the same; on a CPU small groups keep the large
    intermediate tensors in cache, see BENCHMARKS.md)."""
    b, n_mels, t = input_features.shape
    chunk = 2 * tower.n_window
    chunks = (input_features.view(b, n_mels, t // chunk, chunk).permute(0, 2, 1, 3)
              .reshape(b * (t // chunk), 1, n_mels, chunk))
    if chunk_index is not None:
        chunks = chunks.index_select(0, chunk_index)
    if conv_group and chunks.shape[0] > conv_group:
        x = torch.cat([_conv_frames(tower, part) for part in chunks.split(conv_group)])
    else:
        x = _conv_frames(tower, chunks)
    hidden = torch.index_select(x.reshape(-1, x.shape[-1]), 0, frame_index)
    if pad_frames:
        hidden = torch.cat([hidden, hidden.new_zeros(pad_frames, hidden.shape[1])])
    extra = {} if window_layout is None else {"window_layout": window_layout}
    for layer in tower.layers:
        hidden = layer(hidden, cu_seqlens, max_seqlen=max_seqlen, **extra)[0]
    hidden = tower.ln_post(hidden)
    return hidden[: hidden.shape[0] - pad_frames] if pad_frames else hidden


def _forward(self, stock, input_ids=None, input_features=None, input_features_mask=None, attention_mask=None,
             inputs_embeds=None, right_padded_mask=None, audio_cu_seqlens=None, audio_max_seqlen=None,
             audio_positions=None, audio_frame_index=None, audio_pad_frames=0, audio_window_index=None,
             audio_window_pos=None, audio_window_mask=None, **kwargs):
    from transformers.models.qwen3_asr.modeling_qwen3_asr import Qwen3ASRModelOutputWithPast

    if right_padded_mask is not None:
        # SDPA takes the mask ready-made (transformers' own would read the device twice to check it); other
        # attention implementations get the plain 2-D mask and build theirs
        sdpa = self.language_model.config._attn_implementation == "sdpa"
        attention_mask = _causal_mask(right_padded_mask) if sdpa else right_padded_mask
    if audio_cu_seqlens is None:
        return stock(input_ids=input_ids, input_features=input_features, input_features_mask=input_features_mask,
                     attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
    embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
    if audio_frame_index is not None:
        layout = None if audio_window_mask is None else (audio_window_index, audio_window_pos, audio_window_mask)
        audio = _encode_audio(self.audio_tower, input_features, audio_frame_index, audio_cu_seqlens,
                              audio_max_seqlen, audio_pad_frames, layout)
    else:
        audio = self.audio_tower(input_features=input_features, input_features_mask=input_features_mask,
                                 cu_seqlens=audio_cu_seqlens, max_seqlen=audio_max_seqlen).last_hidden_state
    audio = self.multi_modal_projector(audio)
    flat = embeds.reshape(-1, embeds.shape[-1]).index_put((audio_positions,), audio.to(embeds.dtype))
    out = self.language_model(inputs_embeds=flat.view_as(embeds), attention_mask=attention_mask, **kwargs)
    return Qwen3ASRModelOutputWithPast(last_hidden_state=out.last_hidden_state, cache=out.cache,
                                       hidden_states=out.hidden_states, attentions=out.attentions,
                                       audio_hidden_states=audio)
