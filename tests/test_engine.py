"""The static-cache decode engine (``inference/engine.py``) against transformers' ``generate()``, its reference:
the same token ids on the tiny model in fp32, for one clip and for mixed-length left-padded batches, with and
without a forced language, under the same budget and the same EOS and loop rules; and no host read per token."""

import copy
import random

import numpy as np
import pytest
import torch

from polyglot_lion.inference.engine import DecodeEngine, batch_bucket, cache_bucket, loop_window, looping_rows
from polyglot_lion.inference.transcriber import Transcriber, is_looping
from polyglot_lion.model.tiny import build_tiny_model, vary_decoder
from polyglot_lion.testing import TINY_TEXTS, tone

MIXED = [(1.3, 150), (3.1, 300), (0.3, 220), (2.2, 500), (0.9, 400)]  # seconds, Hz: five prompt lengths


def clips(spec) -> list[np.ndarray]:
    return [tone(s, freq=f, seed=i)[:, 0] for i, (s, f) in enumerate(spec)]


def engines(std: float, **kwargs) -> tuple[Transcriber, Transcriber]:
    """(hf, static) transcribers over the same tiny weights, each with its own model instance (the static engine
    switches its model's encoder to the batched window attention)."""
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    vary_decoder(model, std)
    hf = Transcriber(copy.deepcopy(model), processor, engine="hf", **kwargs)
    return hf, Transcriber(model, processor, engine="static", **kwargs)


@pytest.fixture(scope="module", params=[0.05, 0.2], ids=["loopy", "varied"])
def pair(request):
    return engines(request.param, batch_size=8)


def test_looping_rows_is_is_looping():
    """The device test of a window of the last tokens agrees with the pure function on the whole sequence."""
    w = loop_window()
    rng = random.Random(0)
    seen = {True: 0, False: 0}
    for _ in range(2000):
        if rng.random() < 0.3:
            ids = [rng.randint(0, rng.randint(1, 4)) for _ in range(rng.randint(0, 50))]
        else:  # a prefix, then a pattern of 1..9 tokens repeated, cut anywhere
            pattern = [rng.randint(0, 50) for _ in range(rng.randint(1, 9))]
            prefix = [rng.randint(0, 50) for _ in range(rng.randint(0, 10))]
            ids = (prefix + pattern * rng.randint(1, 15))[:rng.randint(0, 60)]
        window = torch.tensor(([-1 - i for i in range(w)] + ids)[-w:])  # sentinels before the first token
        expected = is_looping(ids)
        assert bool(looping_rows(window[None])[0]) == expected, ids
        seen[expected] += 1
    assert min(seen.values()) > 300  # both answers were tested, many times


def test_buckets():
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 16, 17, 128, 129, 300)] == [1, 2, 4, 8, 16, 32, 128, 256, 384]
    assert [cache_bucket(n) for n in (1, 64, 65, 300, 1024, 1025)] == [64, 64, 128, 512, 1024, 2048]


@pytest.mark.parametrize("forced", [None, "Tamil"])
@pytest.mark.parametrize("batch", ["one", "mixed"])
@pytest.mark.parametrize("budget", [None, 7])
def test_same_ids_as_generate(pair, forced, batch, budget):
    """EOS and the loop guard on, as in service; ``budget`` None: by the longest clip, as ``transcribe`` does."""
    hf, static = pair
    audio = clips(MIXED[:1] if batch == "one" else MIXED)
    expected, _ = hf.generate_ids(audio, forced, budget)
    got, _ = static.generate_ids(audio, forced, budget)
    assert got == expected
    if budget:
        assert max(len(r) for r in got) <= budget


def test_loop_guard_and_budget_end_rows_at_different_steps():
    """The loopy decoder: some rows stop on a loop, others run to the budget; pads follow each row's end."""
    hf, static = engines(0.05, batch_size=8)
    audio = clips(MIXED)
    expected, _ = hf.generate_ids(audio, None, 40)
    got, _ = static.generate_ids(audio, None, 40)
    assert got == expected
    ends = [len(r) - r[::-1].index(next(t for t in reversed(r) if t != static.pad_id)) if any(
        t != static.pad_id for t in r) else 0 for r in got]
    assert len(set(ends)) > 1, ends  # rows ended at different steps
    assert any(is_looping(r[:e]) and e < 40 for r, e in zip(got, ends))  # at least one row stopped on a loop


def test_eos_ends_rows_at_different_steps():
    """With tokens the varied decoder writes mid-sequence as EOS, rows end at their own steps (EOS kept, pads
    after), as in generate()."""
    hf, static = engines(0.2, batch_size=8, stop_on_loop=True)
    audio = clips(MIXED)
    free, _ = static.generate_ids(audio, None, 30)
    eos = sorted({r[5] for r in free} | {r[11] for r in free})[:3]
    hf.eos_ids = eos  # the reference reads them per call
    engine = DecodeEngine(static.model, static.pad_id, eos, compile=None)
    inputs = hf.prepare(audio, None)
    expected = hf._hf_generate(inputs, 30).tolist()
    got = engine.generate(inputs, 30).tolist()
    assert got == expected
    stops = [next((i for i, t in enumerate(r) if t in eos), None) for r in got]
    assert len({s for s in stops if s is not None}) > 1, stops
    for r, s in zip(got, stops):
        if s is not None:
            assert all(t == static.pad_id for t in r[s + 1:])


def test_no_stop_generates_the_whole_budget_and_the_same_ids():
    """``stop_at_eos`` and ``stop_on_loop`` off (the benchmark's setting): every row exactly the budget."""
    hf, static = engines(0.2, batch_size=8, stop_at_eos=False, stop_on_loop=False)
    audio = clips(MIXED)
    expected, _ = hf.generate_ids(audio, "Malay", 33)
    got, _ = static.generate_ids(audio, "Malay", 33)
    assert got == expected and all(len(r) == 33 for r in got)


def test_transcribe_gives_the_same_results_on_both_engines():
    """Chunking, batching by length and parsing over either engine: the same texts and languages."""
    hf, static = engines(0.2, batch_size=3, chunk_s=2.0)
    audio = clips(MIXED)
    for language in (None, "en"):
        a, b = hf.transcribe(audio, language), static.transcribe(audio, language)
        assert [(r.text, r.language, r.raw, r.chunks) for r in a] == [(r.text, r.language, r.raw, r.chunks)
                                                                     for r in b]
    assert static.describe()["engine"] == "static" and hf.describe()["engine"] == "hf"


def test_decoding_reads_the_device_only_every_few_steps():
    """Per batch a fixed number of host reads (layout, the final length) plus one per ``check_every`` steps:
    32 more tokens cost 4 more reads, not 32."""
    from polyglot_lion.testing.host_reads import HostReads

    _, static = engines(0.2, batch_size=4, stop_at_eos=False, stop_on_loop=False)
    inputs = static.prepare(clips(MIXED[:3]), None)
    static.engine.generate(inputs, 8)  # states made
    counts = {}
    for budget in (8, 40):
        with HostReads() as reads:
            static.engine.generate(inputs, budget)
        counts[budget] = reads.total
    checks = {b: (b - 1) // static.engine.check_every for b in counts}
    assert counts[40] - counts[8] == checks[40] - checks[8] == 4, counts


def test_compiled_step_gives_the_same_ids():
    """``torch.compile`` of the decode step (on CPU: inductor's C++ kernels) changes nothing in the output."""
    hf, static = engines(0.2, batch_size=2)
    audio = clips(MIXED[:2])
    expected, _ = hf.generate_ids(audio, None, 24)
    engine = DecodeEngine(static.model, static.pad_id, static.eos_ids, compile="default")
    assert engine.generate(static.prepare(audio, None), 24).tolist() == expected


def test_bad_engine_settings_are_named():
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    with pytest.raises(ValueError, match="engine must be one of \\['static', 'hf'\\] \\(is 'vllm'\\)"):
        Transcriber(model, processor, engine="vllm")
    with pytest.raises(ValueError, match="compile must be None, auto, .* \\(is 'fast'\\); check_every must be >= 1"):
        DecodeEngine(model, 0, [2], compile="fast", check_every=0)
    model.generation_config.repetition_penalty = 1.1  # generate() would apply it: refused, not ignored
    with pytest.raises(ValueError, match="generation_config sets repetition_penalty=1.1, .* \\(use engine='hf'\\)"):
        DecodeEngine(model, 0, [2])
    # the Transcriber keeps such a checkpoint's behaviour: it decodes with generate() and says so
    tr = Transcriber(model, processor)
    assert tr.engine is None and tr.describe()["engine"] == "hf"
    model.generation_config.repetition_penalty = 1.0
    engine = DecodeEngine(model, 0, [2])
    inputs = {"attention_mask": torch.tensor([[1, 1, 0]])}
    with pytest.raises(ValueError, match="left-padded"):
        engine.generate(inputs, 4)


def test_prompt_embeddings_are_transformers():
    """The engine's audio path (only the chunks that hold audio convolved, a few chunks per call on a CPU, the
    batched window attention) gives transformers' embeddings: the audio tower's projected frames in the
    placeholders."""
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    reference = copy.deepcopy(model)  # transformers' own encoder attention
    engine = DecodeEngine(model, 0, [2], compile=None)
    assert engine.conv_group is not None and engine.conv_group < 24  # several calls for this batch's chunks
    inputs = Transcriber(reference, processor, engine="hf").prepare(clips(MIXED), None)
    assert bool((inputs["input_features_mask"].view(len(MIXED), -1, 100).sum(-1) == 0).any())  # chunks skipped
    with torch.inference_mode():
        got = engine.prompt_embeddings(inputs["input_ids"], inputs["input_features"], inputs["input_features_mask"])
        audio = reference.model.get_audio_features(inputs["input_features"],
                                                   inputs["input_features_mask"]).pooler_output
        expected = reference.model.get_input_embeddings()(inputs["input_ids"])
        expected[inputs["input_ids"] == reference.config.audio_token_id] = audio
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batched_prefill_is_prefill_per_row():
    """A left-padded batch prefilled at once (the packed path: no arithmetic on padding) leaves each row as the
    prefill of that row alone into its slot (the continuous batcher's path) does: the same first token, the same
    keys and values at the row's real tokens, zeros at its padding, and the same tokens decoded after. (The row
    alone is the batch's row without its padding: the processor's features of a clip depend on its batch.)"""
    _, static = engines(0.2, batch_size=8, stop_at_eos=False, stop_on_loop=False)
    engine, audio = static.engine, clips(MIXED)
    batch = static.prepare(audio, None)
    lengths = batch["attention_mask"].sum(1).tolist()
    p = batch["attention_mask"].shape[1]
    assert len(set(lengths)) == len(MIXED)
    together, alone = engine.new_state(8, 128), engine.new_state(8, 128)
    with torch.inference_mode():
        engine.prefill(together, slice(1, 1 + len(audio)), batch, 20)  # not from row 0: rows are slots
        for row, n in enumerate(lengths):
            one = {k: v[row:row + 1, p - n:] if k in ("input_ids", "attention_mask") else v[row:row + 1]
                   for k, v in batch.items()}
            engine.prefill(alone, slice(row + 1, row + 2), one, 20)
        assert together.tokens.tolist() == alone.tokens.tolist()
        for i in range(len(engine.lm.layers)):
            for row, n in enumerate(lengths):
                for cache in ("keys", "values"):
                    a, b = getattr(together, cache)[i][row + 1], getattr(alone, cache)[i][row + 1]
                    torch.testing.assert_close(a[:, p - n:p], b[:, :n], rtol=1e-5, atol=1e-5)
                    assert not a[:, :p - n].any()  # the padding's slots are zeros
        for _ in range(19):
            engine.step(together)
            engine.step(alone)
        assert together.out.tolist() == alone.out.tolist()
        assert together.n_gen.tolist() == [0] + [20] * len(audio) + [0, 0]
