"""The one transcription engine: used by bulk transcription, evaluation and the HTTP service alike.

    tr = Transcriber.load("models:/polyglot-lion-tiny@champion")     # or a folder, runs:/ID, a hub id
    results = tr.transcribe([samples_16k, ...])                      # language-agnostic (the paper's default)
    results = tr.transcribe([samples_16k], language="ta")            # forced: prompt ends "language Tamil<asr_text>"

Per request: long audio is cut at the quietest 100 ms near each ``chunk_s`` boundary; chunks are sorted by
duration and generated greedily in left-padded batches (capped in clips and in audio seconds); the output
``language X<asr_text>text`` is parsed into language and text; runaway repetitions are cut. bf16 on GPU.

Decoding is ``engine.DecodeEngine`` (static KV cache, no host read per token; ``engine="static"``, the default)
or transformers' ``generate()`` (``engine="hf"``, the reference); both give the same token ids (tests).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ..data.schema import LANGUAGES
from .source import resolve_model

RATE = 16_000
ENGINES = ("static", "hf")
_NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGES.items()}
_PREFIX_RE = re.compile(r"^\s*language\s+([^<\n]*?)\s*<asr_text>", re.IGNORECASE)


# --- pure helpers -------------------------------------------------------------------------------------------

def parse_output(raw: str) -> tuple[str | None, str]:
    """``language English<asr_text>hello`` -> ("en", "hello"); ``language None<asr_text>x`` -> (None, "x");
    output without the prefix -> (None, raw). Unknown language names are returned lowercased as they are."""
    m = _PREFIX_RE.match(raw)
    if not m:
        return None, raw.replace("<asr_text>", " ").strip()
    name = m.group(1).strip().lower()
    lang = None if name in ("", "none") else _NAME_TO_CODE.get(name, name)
    return lang, raw[m.end():].strip()


def language_name(code_or_name: str) -> str:
    """'ta' or 'Tamil' -> 'Tamil'; ValueError naming the allowed values otherwise."""
    key = code_or_name.strip().lower()
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key in _NAME_TO_CODE:
        return LANGUAGES[_NAME_TO_CODE[key]]
    allowed = ", ".join(f"{c} ({n})" for c, n in LANGUAGES.items())
    raise ValueError(f"language {code_or_name!r} is not supported; allowed: {allowed}")


def split_points(samples: np.ndarray, chunk_s: float, rate: int = RATE, search_s: float = 5.0,
                 window_s: float = 0.1) -> list[tuple[int, int]]:
    """(start, end) sample ranges of at most ``chunk_s`` seconds, cut in the quietest ``window_s`` window
    within ``search_s`` seconds (at most a quarter chunk) before each boundary, at that window's middle. Pure."""
    n = len(samples)
    limit = int(chunk_s * rate)
    if n <= limit:
        return [(0, n)]
    win = max(1, int(window_s * rate))
    out, start = [], 0
    while n - start > limit:
        boundary = start + limit
        lo = max(start + win, boundary - int(min(search_s, chunk_s / 4) * rate))
        seg = samples[lo:boundary].astype(np.float64) ** 2
        if len(seg) >= win:
            energy = np.convolve(seg, np.ones(win), mode="valid")  # energy of each window starting at lo + i
            cut = lo + int(np.argmin(energy)) + win // 2
        else:
            cut = boundary
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def fix_repetitions(text: str, threshold: int = 20) -> str:
    """Cut runaway loops: a character repeated more than ``threshold`` times, or a pattern of up to 20
    characters repeated more than ``threshold`` times in a row, is kept ``threshold`` times. Pure."""
    text = re.sub(r"(.)\1{%d,}" % threshold, lambda m: m.group(1) * threshold, text)
    return re.sub(r"(.{2,20}?)\1{%d,}" % threshold, lambda m: m.group(1) * threshold, text, flags=re.DOTALL)


def is_looping(ids: Sequence[int], max_period: int = 8, min_repeats: int = 4, min_run: int = 12) -> bool:
    """True when ``ids`` end in a loop: one token ``min_run`` times, or a pattern of 2..``max_period`` tokens
    repeated ``min_repeats`` times in a row. Pure."""
    n = len(ids)
    for p in range(1, max_period + 1):
        span = p * (min_repeats if p > 1 else min_run)
        if p > 1 and n >= p and len(set(ids[n - p:])) == 1:
            continue  # a run of one token is judged by min_run
        if n >= span and all(ids[n - 1 - i] == ids[n - 1 - i - p] for i in range(span - p)):
            return True
    return False


class StopOnLoop:
    """A transformers stopping criterion: sequences that have started to loop stop generating (the guard
    against runaway repetition; ``fix_repetitions`` then trims what was already written)."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        rows = input_ids[:, self.prompt_len:].tolist()
        return torch.tensor([is_looping(r) for r in rows], device=input_ids.device)


def max_new_tokens_for(duration_s: float, per_second: float = 15.0, floor: int = 16, cap: int = 1024) -> int:
    """A token budget for a clip: fast Tamil speech is ~10 tokens/s in Qwen's vocabulary, plus the
    ``language X<asr_text>`` prefix."""
    return int(min(cap, floor + per_second * duration_s))


# --- the engine -----------------------------------------------------------------------------------------

@dataclass
class Transcription:
    text: str
    language: str | None  # code (en/zh/ta/ms), the forced one, or None when the model says None
    raw: str  # decoded output of the model (all chunks, joined)
    duration_s: float
    seconds: float  # compute time attributed to this item (its share of its batches)
    rtf: float  # seconds / duration_s
    chunks: int = 1
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def join_chunks(parts: list[str], duration_s: float, seconds: float, forced_code: str | None,
                repetition_threshold: int) -> Transcription:
    """One Transcription from the decoded outputs of a clip's chunks, in order: texts joined (without spaces for
    Chinese), repetitions cut, the language forced or the one most chunks say."""
    parsed = [parse_output(p) for p in parts]
    langs = [lang for lang, _ in parsed if lang]
    joiner = "" if (forced_code or (langs[0] if langs else None)) == "zh" else " "
    text = fix_repetitions(joiner.join(t for _, t in parsed if t).strip(), repetition_threshold)
    lang = forced_code or (max(set(langs), key=langs.count) if langs else None)
    return Transcription(text=text, language=lang, raw="\n".join(parts), duration_s=duration_s, seconds=seconds,
                         rtf=seconds / duration_s if duration_s else 0.0, chunks=len(parts))


class Transcriber:
    """Batched greedy transcription with a loaded Qwen3-ASR model and processor."""

    def __init__(self, model, processor, source=None, batch_size: int = 16, max_batch_audio_s: float = 480.0,
                 chunk_s: float = 30.0, repetition_threshold: int = 20, max_new_tokens: int | None = None,
                 engine: str = "static", compile: str | None = "auto", stop_at_eos: bool = True,
                 stop_on_loop: bool = True):
        """``engine``: "static" (``engine.DecodeEngine``: static KV cache, no host read per token) or "hf"
        (transformers' ``generate()``, the reference the static engine is tested against). ``compile``: the
        static engine's decode step (``DecodeEngine``'s ``compile``; "auto": CUDA graphs on a GPU, eager on
        CPU); a compiled step is warmed up here. ``stop_at_eos`` / ``stop_on_loop`` False make every batch
        generate its whole budget (benchmarks: equal token counts for both engines)."""
        import torch

        if max_new_tokens is not None and max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 or None (is {max_new_tokens})")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)} (is {engine!r})")
        self.model, self.processor, self.source = model.eval(), processor, source
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.batch_size, self.max_batch_audio_s = batch_size, max_batch_audio_s
        self.chunk_s, self.repetition_threshold = chunk_s, repetition_threshold
        self.max_new_tokens = max_new_tokens  # a fixed budget per batch; None: max_new_tokens_for(longest clip)
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id
        eos_ids = [i for i in {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id} if i is not None]
        # no EOS: an id past the vocabulary, which greedy decoding never picks (an empty list would make
        # generate() fall back to the model's own EOS)
        self.eos_ids = eos_ids if stop_at_eos else [model.config.text_config.vocab_size]
        self.stop_on_loop = stop_on_loop
        self._base_prompt = processor.apply_transcription_request(np.zeros(1600, np.float32), tokenize=False)[0]
        # "<asr_text>" separates language and text; a tokenizer may mark it special, and skip_special_tokens
        # would then delete it and glue "language None" to the text. Strip the other special tokens ourselves.
        self._strip = sorted({t for t in tok.all_special_tokens if t != "<asr_text>"}, key=len, reverse=True)
        self._torch = torch
        self.engine_name, self.engine, self.warm_up_s = engine, None, 0.0
        if engine == "static":
            from .engine import DecodeEngine, changed_greedy_settings  # torch: only when a model is loaded

            changed = changed_greedy_settings(model.generation_config)
            if changed:  # what generate() would do differently: keep the checkpoint's behaviour, say so once
                print(f"Transcriber: the checkpoint's generation_config sets {changed}, which only generate() "
                      f"applies; decoding with engine='hf'", file=sys.stderr)
                self.engine_name = "hf"
                return
            self.engine = DecodeEngine(model, self.pad_id, self.eos_ids, compile=compile, loop_guard=stop_on_loop)
            if self.engine.compile_mode:  # the first request must not pay for compiling
                self.warm_up_s = self.engine.warm_up(tuple(range(1, batch_size + 1)))

    @classmethod
    def load(cls, uri: str, tracking_uri: str | None = None, device: str | None = None, dtype=None,
             engine: str = "static", **kwargs) -> "Transcriber":
        """From a folder, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID`` or a hub id.
        ``engine``: "static" (our decode engine) or "hf" (``generate()``, the reference); ``kwargs`` go to the
        constructor."""
        import torch

        from ..model.loading import load_model  # transformers and torch: only when a model is loaded

        source = resolve_model(uri, tracking_uri)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        model, processor = load_model(source.path, dtype=dtype, device=device)
        return cls(model, processor, source=source, engine=engine, **kwargs)

    def describe(self) -> dict:
        info = self.source.describe() if self.source else {}
        return {**info, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "engine": self.engine_name}

    def prepare(self, clips: list[np.ndarray], forced: str | None) -> dict:
        """The processor's left-padded batch of prompts (with ``language X<asr_text>`` when forced), on the CPU."""
        prompt = self._base_prompt + (f"language {forced}<asr_text>" if forced else "")
        inputs = self.processor(text=[prompt] * len(clips), audio=clips, return_tensors="pt")  # left-padded
        return {k: v for k, v in inputs.items() if self._torch.is_tensor(v)}

    def generate_ids(self, clips: list[np.ndarray], forced: str | None = None,
                     budget: int | None = None) -> tuple[list[list[int]], float]:
        """(generated ids per clip, seconds): what the chosen engine appends to each prompt, greedy, each row's
        tokens up to its EOS (or loop, or budget) and then pads, all rows as long as the longest; the same
        for both engines. ``budget``: max new tokens (default: ``max_new_tokens``, else by the longest clip)."""
        torch = self._torch
        inputs = self.prepare(clips, forced)
        budget = budget or self.max_new_tokens or max_new_tokens_for(max(len(c) for c in clips) / RATE)
        t0 = time.perf_counter()
        if self.engine is not None:
            new = self.engine.generate(inputs, budget)
        else:
            new = self._hf_generate(inputs, budget)
        rows = new.tolist()  # the one read back of the batch
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return rows, time.perf_counter() - t0

    def _hf_generate(self, inputs: dict, budget: int):
        """The reference path: transformers' ``generate()`` with ``StopOnLoop``."""
        torch = self._torch
        from transformers import StoppingCriteriaList

        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        prompt_len = inputs["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnLoop(prompt_len)] if self.stop_on_loop else [])
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=budget, do_sample=False, num_beams=1,
                                      eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                                      stopping_criteria=criteria)
        return out[:, prompt_len:]

    def _generate(self, clips: list[np.ndarray], forced: str | None) -> tuple[list[str], float]:
        rows, elapsed = self.generate_ids(clips, forced)
        return [self.decode(row) for row in rows], elapsed

    def decode(self, ids: list[int]) -> str:
        """Generated ids -> text with ``<asr_text>`` kept and every other special token removed."""
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=False)
        for t in self._strip:
            text = text.replace(t, "")
        return text

    def transcribe(self, audios: Sequence[np.ndarray], language: str | None = None) -> list[Transcription]:
        """One Transcription per input (16 kHz mono float32 arrays), in input order."""
        forced = language_name(language) if language else None
        forced_code = _NAME_TO_CODE[forced.lower()] if forced else None
        chunks: list[tuple[int, int, np.ndarray]] = []  # (item, chunk index, samples)
        for i, a in enumerate(audios):
            a = np.asarray(a, np.float32).reshape(-1)
            for j, (s, e) in enumerate(split_points(a, self.chunk_s)):
                chunks.append((i, j, a[s:e]))
        order = sorted(range(len(chunks)), key=lambda k: -len(chunks[k][2]))  # longest first: little padding
        texts: dict[tuple[int, int], str] = {}
        secs = [0.0] * len(audios)
        batch: list[int] = []

        def run(batch: list[int]) -> None:
            clips = [chunks[k][2] if len(chunks[k][2]) else np.zeros(160, np.float32) for k in batch]
            outs, elapsed = self._generate(clips, forced)
            total = sum(len(c) for c in clips) or 1
            for k, text in zip(batch, outs):
                i, j, clip = chunks[k]
                texts[(i, j)] = text
                secs[i] += elapsed * len(clip) / total  # each clip's share of its batch, by duration

        for k in order:
            audio_s = sum(len(chunks[b][2]) for b in batch + [k]) / RATE
            if batch and (len(batch) >= self.batch_size or audio_s > self.max_batch_audio_s):
                run(batch)
                batch = []
            batch.append(k)
        if batch:
            run(batch)

        n_chunks = [0] * len(audios)
        for i, _, _ in chunks:
            n_chunks[i] += 1
        return [join_chunks([texts[(i, j)] for j in range(n_chunks[i])], len(a) / RATE, secs[i], forced_code,
                            self.repetition_threshold) for i, a in enumerate(audios)]
