"""Training examples in the checkpoint's own chat format, and batches that are mostly audio, not padding.

An example is the processor's transcription prompt with the audio expanded to one ``<|audio_pad|>`` per encoder
frame, followed by the answer and ``<|im_end|>``:

    agnostic (the paper's default):  language None<asr_text>{text}<|im_end|>
    tagged:                          language English<asr_text>{text}<|im_end|>

Labels are -100 everywhere except the answer and its end token. The prompt pieces come from the processor's
own chat template (``apply_transcription_request``), so a real checkpoint's template is what trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.schema import LANGUAGES

MODES = ("agnostic", "tagged")
IGNORE_INDEX = -100


def answer_text(text: str, language: str | None, mode: str = "agnostic") -> str:
    if mode not in MODES:
        raise ValueError(f"target mode must be one of {list(MODES)} (is {mode!r})")
    name = "None" if mode == "agnostic" or language is None else LANGUAGES[language]
    return f"language {name}<asr_text>{text}"


@dataclass
class Example:
    input_ids: np.ndarray  # int64 (L,)
    labels: np.ndarray  # int64 (L,)
    features: np.ndarray  # float32 (n_mels, T), T a multiple of 2 * n_window
    n_frames: int  # valid mel frames in features


def audio_token_count(n_frames: int, n_window: int) -> int:
    """How many ``<|audio_pad|>`` tokens the encoder makes of ``n_frames`` mel frames: chunks of ``2 * n_window``
    frames, each through three stride-2 convolutions (the processor's ``_get_audio_token_length``)."""
    def conv(n: int) -> int:
        return (n - 1) // 2 + 1

    chunk = 2 * n_window
    return conv(conv(conv(n_frames % chunk))) + (n_frames // chunk) * conv(conv(conv(chunk)))


@dataclass(frozen=True)
class PromptPieces:
    """The checkpoint's transcription prompt around the audio, as token ids, and the ids an example needs. Read
    once from the full processor (its chat template, ``of``); with them, the tokenizer and the feature extractor
    are all ``PromptEncoder`` needs, so a featurising worker loads just those two (``model.loading.
    load_tokenizer_and_features``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    audio_id: int
    end_id: int

    @classmethod
    def of(cls, processor) -> PromptPieces:
        tok = processor.tokenizer
        prompt = processor.apply_transcription_request(np.zeros(1600, np.float32), tokenize=False)[0]
        before, after = prompt.split(processor.audio_token, 1)
        return cls(tuple(tok(before, add_special_tokens=False)["input_ids"]),
                   tuple(tok(after, add_special_tokens=False)["input_ids"]),
                   processor.audio_token_id, tok.convert_tokens_to_ids("<|im_end|>"))


class PromptEncoder:
    """Turns (16 kHz samples, normalised text, language) into an Example for a given processor: the checkpoint's
    processor, or, with its ``pieces``, anything with the processor's ``tokenizer`` and ``feature_extractor``."""

    def __init__(self, processor, mode: str = "agnostic", pieces: PromptPieces | None = None):
        if mode not in MODES:
            raise ValueError(f"target mode must be one of {list(MODES)} (is {mode!r})")
        self.mode = mode
        self.tokenizer, self.feature_extractor = processor.tokenizer, processor.feature_extractor
        pieces = pieces or PromptPieces.of(processor)
        self.prefix, self.suffix = list(pieces.prefix), list(pieces.suffix)
        self.audio_id, self.end_id = pieces.audio_id, pieces.end_id
        self.n_window = self.feature_extractor.n_window

    def audio_tokens(self, n_frames: int) -> int:
        return audio_token_count(n_frames, self.n_window)

    def features(self, samples: np.ndarray) -> tuple[np.ndarray, int]:
        # the processor's own audio settings: pad to this clip's length (not 30 s), never truncate
        out = self.feature_extractor(samples, sampling_rate=16_000, return_attention_mask=True,
                                     padding=True, truncation=False, return_tensors="np")
        return out["input_features"][0].astype(np.float32), int(out["attention_mask"][0].sum())

    def encode(self, samples: np.ndarray, text: str, language: str | None) -> Example:
        feats, n_frames = self.features(samples)
        answer = self.tokenizer(answer_text(text, language, self.mode),
                                add_special_tokens=False)["input_ids"] + [self.end_id]
        prompt = self.prefix + [self.audio_id] * self.audio_tokens(n_frames) + self.suffix
        ids = np.array(prompt + answer, np.int64)
        labels = np.array([IGNORE_INDEX] * len(prompt) + answer, np.int64)
        return Example(ids, labels, feats, n_frames)


def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-pad tokens and mel frames; returns tensors for the model plus ``padding_efficiency`` (frames the
    clips need / frames in the batch) and ``audio_fraction`` (real audio frames / frames in the batch)."""
    import torch

    b = len(examples)
    max_len = max(len(e.input_ids) for e in examples)
    max_t = max(e.features.shape[1] for e in examples)
    n_mels = examples[0].features.shape[0]
    ids = np.full((b, max_len), pad_id, np.int64)
    labels = np.full((b, max_len), IGNORE_INDEX, np.int64)
    attn = np.zeros((b, max_len), np.int64)
    feats = np.zeros((b, n_mels, max_t), np.float32)
    fmask = np.zeros((b, max_t), np.int64)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n], labels[i, :n], attn[i, :n] = e.input_ids, e.labels, 1
        feats[i, :, : e.features.shape[1]] = e.features
        fmask[i, : e.n_frames] = 1
    # The encoder needs each clip's frames rounded up to whole chunks (2 * n_window = 1 s); batching adds the
    # padding from there to the longest clip. padding_efficiency measures what batching controls; audio_fraction
    # counts all padding, the model's own rounding included.
    needed = sum(e.features.shape[1] for e in examples)
    valid = sum(e.n_frames for e in examples)
    return {
        "input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attn),
        "labels": torch.from_numpy(labels), "input_features": torch.from_numpy(feats),
        "input_features_mask": torch.from_numpy(fmask), "padding_efficiency": needed / float(b * max_t),
        "audio_fraction": valid / float(b * max_t),
    }


def bucket_batches(lengths: list[int], max_frames: int, max_batch_size: int, seed: int,
                   window: int = 1000) -> list[list[int]]:
    """Group indices into batches of similar length under a frames budget (batch size x longest <= max_frames).

    Pure and seeded: indices are shuffled, sorted by length inside windows of ``window`` items, cut into
    batches, and the batches shuffled, so batches are nearly padding-free and still random in order.
    """
    if max_frames <= 0 or max_batch_size <= 0:
        raise ValueError(f"max_frames and max_batch_size must be > 0 (are {max_frames}, {max_batch_size})")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window].tolist(), key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_if = max(longest, lengths[i])
            if batch and (len(batch) + 1 > max_batch_size or longest_if * (len(batch) + 1) > max_frames):
                batches.append(batch)
                batch, longest_if = [], lengths[i]
            batch.append(i)
            longest = longest_if
        if batch:
            batches.append(batch)
    return [batches[i] for i in rng.permutation(len(batches))]
