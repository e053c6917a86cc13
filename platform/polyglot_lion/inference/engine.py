"""Greedy decoding for Qwen3-ASR with a static KV cache and no device->host read per token.

    engine = DecodeEngine(model, pad_id=tok.pad_token_id, eos_ids=[im_end_id, eos_id])
    ids = engine.generate(inputs, budget=64)     # inputs: the processor's left-padded batch (on any device)
    # ids: (batch, steps) int64 on the model's device, exactly what HF generate() appends to the prompt

Why: HF ``generate()`` grows a dynamic cache, rebuilds masks and runs logits processors and stopping criteria
in Python every token, and the transcriber's loop guard read every row back to the host each step. Per step
that is overhead, not arithmetic, and on a GPU the host waits for the device once per token. Here:

- the audio encoder runs once per batch (the batched window attention of training, its layout made on the
  host from the CPU feature mask, so the encoder reads nothing back either); it convolves only the 1-s chunks
  that hold audio, and on a CPU a few chunks per call (the same frames, in far less time);
- one prefill over the whole batch fills a preallocated cache (a padded batch's projections and MLPs run on
  its real tokens alone, packed, the attention in the padded layout); a batch of B rows uses the state
  of its bucket (B rounded up to 1, 2, 4, ..., 128) and of its length bucket (prompt + budget rounded up to a
  power of two), so a compiled step (and on CUDA its CUDA graphs) is reused batch after batch;
- every decode step does its bookkeeping on the device: a finished row (EOS, its budget, or a loop: the
  same test as ``transcriber.is_looping``, on a window of the last tokens) writes the pad token, as HF does;
  the host asks "all finished?" only every ``check_every`` steps.

The semantics are the HF reference path's (``Transcriber(engine="hf")``): greedy argmax of the fp32 logits,
left padding with position ids counted from each row's first real token, the first token taken from the
prefill, EOS and the loop guard and the budget checked after each token, pads after a row ends, and the output
as long as the longest row's sequence. A test holds the token ids equal to HF's on the tiny model in fp32.

Every row keeps its own cache position, start and budget, so a row can also be prefilled on its own into a
free slot while the others decode (``scheduler.py``'s continuous batching uses the same step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.encoder_attention import use_batched_encoder_attention, window_layout
from ..model.host_layout import _encode_audio

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
MIN_CACHE_LEN = 64
# on a CPU the audio encoder convolves its 1-s chunks a few at a time: the first convolution's output of one call
# at most this many bytes, so the large intermediate tensors stay in cache (BENCHMARKS.md, decode engine)
CONV_GROUP_BYTES = 4 << 20

# the loop guard, as ``transcriber.is_looping``'s defaults
LOOP_MAX_PERIOD, LOOP_MIN_REPEATS, LOOP_MIN_RUN = 8, 4, 12


def batch_bucket(n: int, buckets: tuple[int, ...] = BATCH_BUCKETS) -> int:
    """The smallest bucket that holds ``n`` rows; above the largest, ``n`` rounded up to a multiple of it."""
    for b in buckets:
        if n <= b:
            return b
    return -(-n // buckets[-1]) * buckets[-1]


def conv_group(tower, dtype: torch.dtype) -> int:
    """Chunks per convolution call of the audio encoder ``tower`` on a CPU: as many as keep the first
    convolution's output within ``CONV_GROUP_BYTES``, at least one."""
    a = tower.config
    per_chunk = tower.conv2d1.out_channels * ((a.num_mel_bins + 1) // 2) * a.n_window * dtype.itemsize
    return max(1, CONV_GROUP_BYTES // per_chunk)


def cache_bucket(n: int) -> int:
    """Cache length for ``n`` positions: the next power of two, at least ``MIN_CACHE_LEN``."""
    length = MIN_CACHE_LEN
    while length < n:
        length *= 2
    return length


# generation_config settings that change what greedy decoding picks, with the value that changes nothing
_NEUTRAL_GENERATION = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
                       "suppress_tokens": None, "begin_suppress_tokens": None, "min_length": 0,
                       "min_new_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                       "sequence_bias": None, "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0}


def changed_greedy_settings(generation_config) -> list[tuple[str, object]]:
    """The (name, value) of each setting in ``generation_config`` that makes ``generate()``'s greedy choice differ
    from the argmax of the logits (this engine only takes the argmax)."""
    values = {k: getattr(generation_config, k, neutral) for k, neutral in _NEUTRAL_GENERATION.items()}
    return [(k, v) for k, v in values.items() if v not in (_NEUTRAL_GENERATION[k], None, [])]


def loop_window(max_period: int = LOOP_MAX_PERIOD, min_repeats: int = LOOP_MIN_REPEATS,
                min_run: int = LOOP_MIN_RUN) -> int:
    """How many of the last tokens the loop test needs to see."""
    return max(min_run, max_period * min_repeats)


def looping_rows(window: torch.Tensor, max_period: int = LOOP_MAX_PERIOD, min_repeats: int = LOOP_MIN_REPEATS,
                 min_run: int = LOOP_MIN_RUN) -> torch.Tensor:
    """``transcriber.is_looping`` for every row of ``window`` (batch, W), the last W tokens of each row, on the
    device: (batch,) bool. Positions before a row's first token hold distinct negative sentinels, so a test that
    needs more tokens than the row has fails, as ``n >= span`` does in the pure function.

    All periods at once (a handful of kernels, not a loop of them): for period p the last ``span - p`` tokens
    must each equal the token p before it; for p > 1 not when the last p tokens are one token repeated (a run
    of one token is judged by ``min_run``)."""
    b, w = window.shape
    dev = window.device
    periods = torch.arange(1, max_period + 1, device=dev)
    spans = periods * torch.where(periods > 1, min_repeats, min_run)
    cols = torch.arange(w, device=dev)
    earlier = window[:, (cols[None, :] - periods[:, None]).clamp(min=0)]  # (b, periods, w): the token p before
    needed = cols[None, :] >= w - (spans - periods)[:, None]  # (periods, w): the comparisons period p needs
    repeats = ((window[:, None, :] == earlier) | ~needed).all(-1)
    last = cols[None, :] >= w - periods[:, None]  # (periods, w): the last p positions
    one_token = ((window == window[:, -1:])[:, None, :] | ~last).all(-1) & (periods > 1)
    return (repeats & ~one_token).any(-1)


@dataclass
class DecodeState:
    """The preallocated tensors of one (batch bucket, cache length) pair; every step updates them in place, so
    a compiled step (a CUDA graph on a GPU) always sees the same storage."""
    keys: list[torch.Tensor]  # per layer (rows, kv heads, cache length, head dim)
    values: list[torch.Tensor]
    tokens: torch.Tensor  # (rows,) the last accepted token, fed to the next step
    cache_pos: torch.Tensor  # (rows,) the cache slot the next fed token is written to
    start: torch.Tensor  # (rows,) the slot of each row's first real prompt token (left padding before it)
    n_gen: torch.Tensor  # (rows,) tokens accepted so far
    budget: torch.Tensor  # (rows,) the most tokens a row may generate
    finished: torch.Tensor  # (rows,) bool
    window: torch.Tensor  # (rows, W) the last W accepted tokens, for the loop guard
    out: torch.Tensor  # (rows, cache length + 1) accepted tokens; the last column takes finished rows' writes

    @property
    def rows(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.keys, *self.values, self.tokens, self.cache_pos, self.start, self.n_gen, self.budget,
                self.finished, self.window, self.out]


class DecodeEngine:
    """Greedy decoding of one Qwen3-ASR model (``Qwen3ASRForConditionalGeneration``) with static caches.

    ``compile``: None (eager), "default", "reduce-overhead" (CUDA graphs on a GPU) or "auto" (reduce-overhead
    on CUDA, eager on CPU: see BENCHMARKS.md for the CPU comparison). ``loop_guard``: stop a row that loops
    (``StopOnLoop``'s rule); ``check_every``: decode steps between two host checks of "all rows finished"."""

    def __init__(self, model, pad_id: int, eos_ids: list[int], compile: str | None = "auto",
                 loop_guard: bool = True, check_every: int = 8):
        from transformers.models.qwen3_asr.modeling_qwen3_asr import Qwen3ASRForConditionalGeneration


        if not isinstance(model, Qwen3ASRForConditionalGeneration):
            raise ValueError(f"DecodeEngine needs a Qwen3ASRForConditionalGeneration (is {type(model).__name__})")
        text = model.config.text_config
        problems = []
        if any(t != "full_attention" for t in text.layer_types):
            problems.append(f"layer_types must all be full_attention (are {sorted(set(text.layer_types))})")
        if text.rope_parameters.get("rope_type", "default") != "default":
            problems.append(f"rope_type must be default (is {text.rope_parameters.get('rope_type')!r})")
        if compile not in (None, "auto", "default", "reduce-overhead", "max-autotune"):
            problems.append(f"compile must be None, auto, default, reduce-overhead or max-autotune (is {compile!r})")
        if check_every < 1:
            problems.append(f"check_every must be >= 1 (is {check_every})")
        problems += [f"the checkpoint's generation_config sets {k}={v!r}, which generate() applies and this engine "
                     f"does not (use engine='hf')" for k, v in changed_greedy_settings(model.generation_config)]
        if problems:
            raise ValueError("DecodeEngine: " + "; ".join(problems))
        self.model = model.eval()
        self.lm = model.model.language_model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.pad_id, self.loop_guard, self.check_every = int(pad_id), loop_guard, check_every
        self.eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=self.device)
        self.window_len = loop_window()
        self.sentinels = -1 - torch.arange(self.window_len, device=self.device)  # distinct, never a token
        attn = self.lm.layers[0].self_attn
        self.kv_heads = text.num_key_value_heads
        self.groups = attn.num_key_value_groups
        self.head_dim = attn.head_dim
        use_batched_encoder_attention(model)  # no-op with flash attention, which has varlen kernels
        self.conv_group = conv_group(model.model.audio_tower, self.dtype) if self.device.type == "cpu" else None
        if compile == "auto":
            compile = "reduce-overhead" if self.device.type == "cuda" else None
        self.compile_mode = compile
        self._step = self._decode_step if compile is None else torch.compile(self._decode_step, mode=compile)
        self._states: dict[tuple[int, int], DecodeState] = {}

    # --- states -------------------------------------------------------------------------------------------
    def state(self, rows: int, length: int) -> DecodeState:
        """The state of this (batch bucket, cache length) for ``generate``, made on first use and kept."""
        key = (rows, length)
        if key not in self._states:
            self._states[key] = self.new_state(rows, length)
        return self._states[key]

    @torch.inference_mode()  # always inference tensors: a compiled step's guards tell them from others
    def new_state(self, rows: int, length: int) -> DecodeState:
        """A state of ``rows`` rows of ``length`` cache slots, every row finished (free)."""
        dev, shape = self.device, (rows, self.kv_heads, length, self.head_dim)
        n = len(self.lm.layers)
        s = DecodeState(
            keys=[torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(n)],
            values=[torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(n)],
            tokens=torch.full((rows,), self.pad_id, dtype=torch.long, device=dev),
            cache_pos=torch.zeros(rows, dtype=torch.long, device=dev),
            start=torch.zeros(rows, dtype=torch.long, device=dev),
            n_gen=torch.zeros(rows, dtype=torch.long, device=dev),
            budget=torch.zeros(rows, dtype=torch.long, device=dev),
            finished=torch.ones(rows, dtype=torch.bool, device=dev),
            window=self.sentinels.repeat(rows, 1),
            out=torch.full((rows, length + 1), self.pad_id, dtype=torch.long, device=dev))
        if self.compile_mode:
            # sizes symbolic, so one compilation serves every bucket (batch 1 aside: dynamo specialises
            # sizes of 1) and the warm-up covers them all; on CUDA each (rows, length) still records its
            # own graph, which is quick
            for t in s.tensors():
                torch._dynamo.maybe_mark_dynamic(t, 0)
            for t in (*s.keys, *s.values):
                torch._dynamo.maybe_mark_dynamic(t, 2)
            torch._dynamo.maybe_mark_dynamic(s.out, 1)
        if self.compile_mode == "reduce-overhead":
            for t in s.tensors():  # updated in place by the CUDA graphs: their addresses must not move
                torch._dynamo.mark_static_address(t)
        return s

    def warm_up(self, batch_sizes: tuple[int, ...], length: int = 256) -> float:
        """Compile (and on CUDA record) the decode step for these batch sizes' buckets and one cache length, so
        the first request does not pay for it; returns the seconds it took."""
        t0 = time.perf_counter()
        for b in sorted({batch_bucket(n) for n in batch_sizes}):
            s = self.state(b, cache_bucket(length))
            with torch.inference_mode():
                s.finished.zero_()  # a few real steps (on garbage): the graph is what matters
                s.budget.fill_(3)
                s.n_gen.zero_()
                s.cache_pos.zero_()
                s.start.zero_()
                for _ in range(3):
                    self._step(*s.tensors())
                s.finished.fill_(True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    # --- the model, piece by piece (transformers' Qwen3 modules, our cache) --------------------------------
    def _qkv(self, attn, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """``Qwen3Attention.forward`` up to the attention: projections, q/k norms, rotary embedding."""
        from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

        shape = (*h.shape[:-1], -1, attn.head_dim)
        q = attn.q_norm(attn.q_proj(h).view(shape)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(h).view(shape)).transpose(1, 2)
        v = attn.v_proj(h).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _mlp_block(self, layer, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        x = x + layer.self_attn.o_proj(attn_out)
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.lm.norm(last_hidden)).float()

    def _accept(self, logits: torch.Tensor, tokens, n_gen, budget, finished, window, out) -> None:
        """Greedy next token of every row and the bookkeeping after it, in place: a finished row writes the pad
        token (to the spare last column of ``out``); a row finishes on EOS, at its budget, or when looping."""
        active = ~finished
        nxt = torch.where(active, logits.argmax(-1), self.pad_id)
        rows = torch.arange(nxt.shape[0], device=nxt.device)
        out.index_put_((rows, torch.where(active, n_gen, out.shape[1] - 1)), nxt)
        n_gen.add_(active.long())
        window.copy_(torch.where(active[:, None], torch.cat([window[:, 1:], nxt[:, None]], 1), window))
        done = torch.isin(nxt, self.eos) | (n_gen >= budget)
        if self.loop_guard:
            done |= looping_rows(window)
        finished.logical_or_(active & done)
        tokens.copy_(nxt)

    def _decode_step(self, *state: torch.Tensor) -> None:
        """One token for every row of a state (``DecodeState.tensors()`` order), all in place."""
        n = len(self.lm.layers)
        keys, values = state[:n], state[n:2 * n]
        tokens, cache_pos, start, n_gen, budget, finished, window, out = state[2 * n:]
        rows, length = tokens.shape[0], keys[0].shape[2]
        x = self.lm.embed_tokens(tokens)[:, None]
        cos, sin = self.lm.rotary_emb(x, (cache_pos - start)[:, None])
        slots = torch.arange(length, device=x.device)
        mask = ((slots >= start[:, None]) & (slots <= cache_pos[:, None]))[:, None, None, :]
        row = torch.arange(rows, device=x.device)
        for i, layer in enumerate(self.lm.layers):
            attn = layer.self_attn
            q, k, v = self._qkv(attn, layer.input_layernorm(x), cos, sin)
            keys[i][row, :, cache_pos] = k[:, :, 0]  # each row at its own slot: (rows, kv heads, head dim)
            values[i][row, :, cache_pos] = v[:, :, 0]
            # one query per row: the query heads of a kv head attend as a group, without repeating the cache
            q = q.reshape(rows, self.kv_heads, self.groups, self.head_dim)
            o = F.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=mask, scale=attn.scaling)
            x = self._mlp_block(layer, x, o.reshape(rows, 1, -1))
        cache_pos.add_((~finished).long())
        self._accept(self._logits(x[:, 0]), tokens, n_gen, budget, finished, window, out)

    def _prefill(self, s: DecodeState, rows: slice, embeds: torch.Tensor, attention_mask: torch.Tensor,
                 real: torch.Tensor | None = None) -> None:
        """The whole left-padded prompt of ``embeds`` (B, P, hidden) at once into the cache's first P slots of the
        state's ``rows`` (B of them), then their first token. Position ids as HF's generate makes them (counted
        from the first real token). ``real``: the flat positions (in B * P) of the real tokens when some row is
        padded (``_prefill_packed``), else None."""
        if real is not None:
            self._prefill_packed(s, rows, embeds, attention_mask, real)
            return
        b, p = attention_mask.shape
        positions = torch.arange(p, device=embeds.device).expand(b, p)
        cos, sin = self.lm.rotary_emb(embeds, positions)
        x = embeds
        for i, layer in enumerate(self.lm.layers):
            attn = layer.self_attn
            q, k, v = self._qkv(attn, layer.input_layernorm(x), cos, sin)
            s.keys[i][rows, :, :p].copy_(k)
            s.values[i][rows, :, :p].copy_(v)
            # as transformers' SDPA path without a mask: causal, grouped heads
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling,
                                               enable_gqa=self.groups > 1)
            x = self._mlp_block(layer, x, o.transpose(1, 2).reshape(b, p, -1))
        self._accept(self._logits(x[:, -1]), *self._rows(s, rows))

    def _prefill_packed(self, s: DecodeState, rows: slice, embeds: torch.Tensor, attention_mask: torch.Tensor,
                        real: torch.Tensor) -> None:
        """``_prefill`` of a batch with padding: the projections and MLPs run on the real tokens alone, packed
        one row after another (no arithmetic on padding); queries, keys and values are then laid out padded
        (zeros at the padding) for the attention and the cache, with a causal and padding mask (a padding query
        attends to itself only, so no row of the attention is empty; its output is dropped)."""
        b, p = attention_mask.shape
        dev = embeds.device
        positions = (attention_mask.long().cumsum(-1) - 1).flatten().index_select(0, real)
        last = attention_mask.sum(1).cumsum(0) - 1  # each row's last token, in the packed order
        causal = torch.ones(p, p, dtype=torch.bool, device=dev).tril()
        mask = (causal[None] & attention_mask.bool()[:, None, :]) | torch.eye(p, dtype=torch.bool, device=dev)
        mask = mask[:, None]

        def padded(t: torch.Tensor) -> torch.Tensor:  # (1, heads, tokens, head dim) -> (B, heads, P, head dim)
            t = t[0].transpose(0, 1)
            return (t.new_zeros(b * p, *t.shape[1:]).index_copy_(0, real, t)
                    .view(b, p, *t.shape[1:]).transpose(1, 2))

        x = embeds.reshape(b * p, -1).index_select(0, real)[None]  # (1, tokens, hidden)
        cos, sin = self.lm.rotary_emb(x, positions[None])
        for i, layer in enumerate(self.lm.layers):
            attn = layer.self_attn
            q, k, v = (padded(t) for t in self._qkv(attn, layer.input_layernorm(x), cos, sin))
            s.keys[i][rows, :, :p].copy_(k)
            s.values[i][rows, :, :p].copy_(v)
            o = F.scaled_dot_product_attention(q, k.repeat_interleave(self.groups, 1),
                                               v.repeat_interleave(self.groups, 1), attn_mask=mask,
                                               scale=attn.scaling)
            o = o.transpose(1, 2).reshape(b * p, -1).index_select(0, real)
            x = self._mlp_block(layer, x, o[None])
        self._accept(self._logits(x[0, last]), *self._rows(s, rows))

    @staticmethod
    def _rows(s: DecodeState, rows: slice) -> tuple[torch.Tensor, ...]:
        """The per-row tensors ``_accept`` updates, as views of the state's ``rows``."""
        return tuple(t[rows] for t in (s.tokens, s.n_gen, s.budget, s.finished, s.window, s.out))

    # --- audio ----------------------------------------------------------------------------------------------
    def prompt_embeddings(self, input_ids: torch.Tensor, input_features: torch.Tensor,
                          input_features_mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the audio placeholders replaced by the encoder's projected frames; the
        encoder's windows and the placeholders' positions are found on the host (CPU inputs), nothing is read
        back from the device."""
        from transformers.models.qwen3_asr.modeling_qwen3_asr import (
            Qwen3ASREncoder,
            _get_feat_extract_output_lengths,
            get_audio_cu_seqlens,
        )


        core = self.model.model
        a = core.audio_tower.config
        ids, fmask = input_ids.cpu(), input_features_mask.cpu()
        b, t = fmask.shape
        chunk = 2 * a.n_window
        feature_lens = fmask.sum(-1).long()
        chunk_lengths = fmask.view(b, t // chunk, chunk).sum(-1).reshape(-1).long()
        cu = get_audio_cu_seqlens(chunk_lengths, feature_lens, a.n_window_infer, a.n_window)
        width = int((cu[1:] - cu[:-1]).max())
        per_chunk = int(Qwen3ASREncoder._post_cnn_length(torch.tensor([chunk]))[0])
        kept = chunk_lengths.nonzero().squeeze(1)  # chunks of padding alone give no frame: not convolved
        frame_index = (torch.arange(per_chunk) < Qwen3ASREncoder._post_cnn_length(chunk_lengths[kept])[:, None])
        frame_index = frame_index.flatten().nonzero().squeeze(1)
        positions = (ids == self.model.config.audio_token_id).flatten().nonzero().squeeze(1)
        frames = int(_get_feat_extract_output_lengths(feature_lens, a.n_window).sum())
        if not positions.numel() == frames == frame_index.numel():
            raise ValueError(f"the prompts have {positions.numel()} audio placeholders but the audio gives {frames} "
                             f"encoder frames; they must be equal")
        dev = self.device
        layout = None
        if getattr(core.audio_tower.layers[0].self_attn, "takes_window_layout", False):
            layout = tuple(x.to(dev) for x in window_layout(cu, width))
        audio = _encode_audio(core.audio_tower, input_features.to(dev, self.dtype), frame_index.to(dev),
                              cu.to(dev), width, 0, layout, chunk_index=kept.to(dev), conv_group=self.conv_group)
        audio = core.multi_modal_projector(audio)
        embeds = self.lm.embed_tokens(input_ids.to(dev))
        flat = embeds.reshape(-1, embeds.shape[-1]).index_put((positions.to(dev),), audio.to(embeds.dtype))
        return flat.view_as(embeds)

    def step(self, s: DecodeState) -> None:
        """One decode step of every row of ``s`` (compiled when the engine is), in inference mode."""
        self._step(*s.tensors())

    # --- a whole batch --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, s: DecodeState, rows: slice, inputs: dict, budget: int | list[int]) -> None:
        """Start the left-padded prompts of ``inputs`` (the processor's batch, on the CPU) in the state's ``rows``:
        audio encoder, prompt into the cache, first token; the other rows are left as they are (continuous
        batching prefills one row while the others are mid-sequence). ``budget``: max new tokens, one for all
        or one per row."""
        attention_mask = inputs["attention_mask"].cpu()
        b, p = attention_mask.shape
        pad = (attention_mask == 0).sum(1)
        if bool((attention_mask[:, -1] == 0).any()) or bool((attention_mask.cumsum(1) == 0).sum(1).ne(pad).any()):
            raise ValueError("prefill: the batch must be left-padded (each row zeros, then ones)")
        if rows.stop - rows.start != b or rows.stop > s.rows:
            raise ValueError(f"prefill: {b} prompts for rows {rows.start}..{rows.stop - 1} of a state of {s.rows}")
        if p + (budget if isinstance(budget, int) else max(budget)) > s.length:
            raise ValueError(f"prefill: a prompt of {p} tokens and a budget of {budget} do not fit {s.length} slots")
        dev = self.device
        embeds = self.prompt_embeddings(inputs["input_ids"], inputs["input_features"], inputs["input_features_mask"])
        s.start[rows] = pad.to(dev)
        s.cache_pos[rows] = p
        s.n_gen[rows] = 0
        s.budget[rows] = torch.as_tensor(budget, device=dev)
        s.window[rows] = self.sentinels
        s.out[rows] = self.pad_id
        s.tokens[rows] = self.pad_id
        s.finished[rows] = False
        real = attention_mask.flatten().nonzero().squeeze(1).to(dev) if bool(pad.any()) else None
        self._prefill(s, rows, embeds, attention_mask.to(dev), real)

    @torch.inference_mode()
    def generate(self, inputs: dict, budget: int) -> torch.Tensor:
        """Greedy-decode one left-padded batch (the processor's ``input_ids``, ``attention_mask``,
        ``input_features``, ``input_features_mask``); returns the generated ids (batch, steps) on the device:
        each row's tokens up to and including the one that ended it, then pads, ``steps`` the longest row's."""
        if budget < 1:
            raise ValueError(f"budget must be >= 1 (is {budget})")
        b, p = inputs["attention_mask"].shape
        s = self.state(batch_bucket(b), cache_bucket(p + budget))
        s.finished.fill_(True)  # the bucket's spare rows stay finished
        self.prefill(s, slice(0, b), inputs, budget)
        for i in range(1, budget):
            if i % self.check_every == 0 and bool(s.finished.all()):
                break
            self.step(s)
        steps = int(s.n_gen[:b].max())
        return s.out[:b, :steps].clone()
