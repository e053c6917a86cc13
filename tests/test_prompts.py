"""Training examples: the chat format, labels only on the answer, collation, duration bucketing."""

import numpy as np
import pytest

from polyglot_lion.model.prompts import (
    IGNORE_INDEX,
    PromptEncoder,
    answer_text,
    bucket_batches,
    collate,
)
from polyglot_lion.model.tiny import build_tiny_processor
from polyglot_lion.testing import TINY_TEXTS


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor(TINY_TEXTS)


def test_answer_text():
    assert answer_text("hello", "en") == "language None<asr_text>hello"
    assert answer_text("hello", "en", "tagged") == "language English<asr_text>hello"
    assert answer_text("你好", "zh", "tagged") == "language Chinese<asr_text>你好"
    with pytest.raises(ValueError, match=r"target mode must be one of \['agnostic', 'tagged'\]"):
        answer_text("x", "en", "forced")


@pytest.mark.parametrize("mode", ["agnostic", "tagged"])
def test_encode_matches_the_processor_and_masks_the_prompt(processor, mode):
    enc = PromptEncoder(processor, mode)
    samples = np.random.default_rng(0).standard_normal(16000 * 2 + 123).astype(np.float32) * 0.1
    ex = enc.encode(samples, "saya suka makan", "ms")
    # the same ids the processor makes from the full conversation text
    prompt = processor.apply_transcription_request(samples, tokenize=False)[0]
    answer = answer_text("saya suka makan", "ms", mode)
    ref = processor(text=[prompt + answer + "<|im_end|>"], audio=[samples])
    assert ex.input_ids.tolist() == ref["input_ids"][0].tolist()
    assert np.allclose(ex.features, ref["input_features"][0].numpy())
    # labels: -100 on the prompt and audio, the answer and <|im_end|> kept
    n_label = int((ex.labels != IGNORE_INDEX).sum())
    answer_ids = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert n_label == len(answer_ids) + 1
    assert ex.labels[-1] == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert processor.tokenizer.decode(ex.labels[ex.labels != IGNORE_INDEX][:-1]) == answer
    assert not np.any(ex.labels[ex.input_ids == processor.audio_token_id] != IGNORE_INDEX)


def test_collate_pads_and_measures_efficiency(processor):
    enc = PromptEncoder(processor)
    rng = np.random.default_rng(1)
    exs = [enc.encode(rng.standard_normal(n).astype(np.float32) * 0.1, "hello world", "en") for n in (16000, 40000)]
    batch = collate(exs, processor.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2 and batch["input_features"].shape[2] % 100 == 0
    assert batch["input_features_mask"].sum().item() == sum(e.n_frames for e in exs)
    assert batch["labels"][0, len(exs[0].input_ids):].eq(IGNORE_INDEX).all()
    padded = 2 * batch["input_features"].shape[2]  # two clips padded to the longer one (whole 1-s chunks)
    assert batch["padding_efficiency"] == pytest.approx(sum(e.features.shape[1] for e in exs) / padded)
    assert batch["audio_fraction"] == pytest.approx(sum(e.n_frames for e in exs) / padded)
    assert 0 < batch["audio_fraction"] < batch["padding_efficiency"] < 1


def test_bucket_batches_budget_and_determinism():
    rng = np.random.default_rng(0)
    lengths = rng.integers(200, 1500, 500).tolist()
    batches = bucket_batches(lengths, max_frames=6000, max_batch_size=16, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(500))  # every item exactly once
    for b in batches:
        assert len(b) <= 16 and max(lengths[i] for i in b) * len(b) <= 6000 or len(b) == 1
    eff = sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert eff > 0.9  # little of each batch is padding
    assert bucket_batches(lengths, 6000, 16, seed=3) == batches
    assert bucket_batches(lengths, 6000, 16, seed=4) != batches
    with pytest.raises(ValueError):
        bucket_batches(lengths, 0, 16, 0)


def test_audio_token_count_is_the_processors(processor):
    import torch

    from polyglot_lion.model.prompts import audio_token_count

    frames = torch.arange(0, 3001)
    want = processor._get_audio_token_length(frames, 50).tolist()
    assert [audio_token_count(n, 50) for n in range(3001)] == want


def test_a_featuriser_without_the_processor_encodes_as_the_processor(processor, tmp_path):
    """A featurising worker loads only the tokenizer and the feature extractor (the prompt's pieces come from
    the driver): the same examples, and transformers' processor and modeling modules stay unimported."""
    import json
    import subprocess
    import sys

    from polyglot_lion.model.loading import load_tokenizer_and_features
    from polyglot_lion.model.prompts import PromptPieces

    processor.save_pretrained(tmp_path)
    parts = load_tokenizer_and_features(tmp_path)
    assert type(parts.tokenizer) is type(processor.tokenizer)
    pieces = PromptPieces.of(processor)
    rng = np.random.default_rng(3)
    for mode in ("agnostic", "tagged"):
        full, light = PromptEncoder(processor, mode), PromptEncoder(parts, mode, pieces)
        for n, text, lang in [(16000, "hello world", "en"), (40123, "你好世界", "zh"), (9000, "vanakkam", "ta"),
                              (23456, "saya suka makan", "ms")]:
            samples = rng.standard_normal(n).astype(np.float32) * 0.1
            a, b = full.encode(samples, text, lang), light.encode(samples, text, lang)
            assert a.input_ids.tolist() == b.input_ids.tolist() and a.labels.tolist() == b.labels.tolist()
            assert a.n_frames == b.n_frames and np.array_equal(a.features, b.features)
    probe = ("import json, sys; from polyglot_lion.model.loading import load_tokenizer_and_features; "
             f"load_tokenizer_and_features({str(tmp_path)!r}); "
             "print(json.dumps([m for m in ('transformers.processing_utils', 'transformers.modeling_utils') "
             "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []
    (tmp_path / "tokenizer_config.json").write_text("{}")  # no class named: the caller loads the processor
    assert load_tokenizer_and_features(tmp_path) is None
