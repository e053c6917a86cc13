"""Balancing arithmetic: pure and seeded, no Ray."""

import math
from collections import Counter

import pyarrow as pa
import pytest

from polyglot_lion.data.balance import (
    attach_counts,
    make_plan,
    plan_table,
    plan_temperature,
    plan_two_stage,
    replicate_subsample,
    shard_order,
    temperature_targets,
    write_plan,
)
from polyglot_lion.data.synth import PAPER_TRAIN_HOURS


def corpus_of(sizes: dict[tuple[str, str], int]):
    return {k: [f"{k[1]}/{i:06d}" for i in range(n)] for k, n in sizes.items()}


# the paper's Table 1 shape, in units of 10 utterances per train hour
PAPER = {(lang, name): round(h * 10) for name, lang, h in PAPER_TRAIN_HOURS}


def test_replicate_subsample_counts():
    import numpy as np

    idx = replicate_subsample(3, 8, np.random.default_rng(0))
    assert len(idx) == 8 and set(idx) <= {0, 1, 2}
    assert max(Counter(idx.tolist()).values()) <= math.ceil(8 / 3)
    same = replicate_subsample(5, 5, np.random.default_rng(1))
    assert sorted(same.tolist()) == [0, 1, 2, 3, 4]  # the largest dataset is kept whole
    with pytest.raises(ValueError):
        replicate_subsample(0, 3, np.random.default_rng(0))


def test_two_stage_on_paper_skew():
    corpus = corpus_of(PAPER)
    plan = plan_two_stage(corpus, seed=0)
    s = plan.summary()
    by_lang = {}
    for (lang, name), n in PAPER.items():
        by_lang.setdefault(lang, []).append(n)
    n_star = {lang: max(v) for lang, v in by_lang.items()}
    stage1 = {lang: len(v) * n_star[lang] for lang, v in by_lang.items()}
    m = max(stage1.values())
    assert {lang: v["stage1"] for lang, v in s["languages"].items()} == stage1
    assert stage1 == {"en": 2 * 1480, "zh": 4 * 1508, "ta": 4 * 1199, "ms": 2 * 494}
    assert m == 6032 and s["total"] == 4 * m
    for lang, v in s["languages"].items():
        assert v["utterances"] == m  # exactly 25% each
        assert sum(v["datasets"].values()) == m
    # within a language, datasets are equal in expectation after stage 2 (each holds n_star before it)
    zh = s["languages"]["zh"]["datasets"]
    assert all(abs(n - m / 4) < 0.1 * m for n in zh.values())
    # the smallest dataset is upsampled the most, and every utterance of it is used
    used = Counter(uid for lang, ds, uid in plan.rows if ds == "slr65")
    assert len(used) == PAPER[("ta", "slr65")]


def test_two_stage_language_with_one_dataset():
    corpus = corpus_of({("en", "a"): 10, ("en", "b"): 4, ("ms", "only"): 3})
    s = plan_two_stage(corpus, seed=1).summary()
    assert s["languages"]["en"]["stage1"] == 20
    assert s["languages"]["ms"]["stage1"] == 3
    assert s["languages"]["ms"] == {"utterances": 20, "stage1": 3, "datasets": {"only": 20}}
    assert s["total"] == 40


def test_deterministic_and_seed_sensitive():
    corpus = corpus_of(PAPER)
    a, b = plan_two_stage(corpus, 7), plan_two_stage(corpus, 7)
    assert a.rows == b.rows
    c = plan_two_stage(corpus, 8)
    assert c.rows != a.rows and c.summary()["total"] == a.summary()["total"]
    # insertion order of the corpus dict does not matter
    reordered = dict(reversed(list(corpus.items())))
    assert plan_two_stage(reordered, 7).rows == a.rows


def test_plan_files_are_byte_identical(tmp_path):
    corpus = corpus_of({("en", "a"): 30, ("zh", "b"): 5, ("zh", "c"): 9})
    durations = {uid: 1.5 for ids in corpus.values() for uid in ids}
    before = pa.table({"language": [k[0] for k, v in corpus.items() for _ in v],
                       "dataset": [k[1] for k, v in corpus.items() for _ in v],
                       "duration_s": [1.5] * sum(map(len, corpus.values()))})
    for run in ("x", "y"):
        write_plan(plan_two_stage(corpus, 3), durations, before, str(tmp_path / run))
    for f in ("plan.parquet", "summary.json"):
        assert (tmp_path / "x" / f).read_bytes() == (tmp_path / "y" / f).read_bytes()
    write_plan(plan_two_stage(corpus, 4), durations, before, str(tmp_path / "z"))
    assert (tmp_path / "z" / "plan.parquet").read_bytes() != (tmp_path / "x" / "plan.parquet").read_bytes()


def test_plan_table_repeat_indices():
    corpus = corpus_of({("en", "a"): 2, ("ms", "b"): 1})
    plan = plan_two_stage(corpus, 0)
    t = plan_table(plan, {uid: 1.0 for v in corpus.values() for uid in v})
    pairs = list(zip(t["id"].to_pylist(), t["repeat"].to_pylist()))
    assert len(set(pairs)) == len(pairs)  # (id, repeat) identifies an occurrence
    assert Counter(t["id"].to_pylist())["b/000000"] == 2
    assert sorted(r for i, r in pairs if i == "b/000000") == [0, 1]
    assert t["index"].to_pylist() == list(range(t.num_rows))


def test_natural_uses_everything_once():
    corpus = corpus_of(PAPER)
    plan = make_plan(corpus, "natural", 0)
    assert sorted(uid for _, _, uid in plan.rows) == sorted(u for v in corpus.values() for u in v)


def test_temperature():
    sizes = {"en": 2486, "zh": 2599, "ta": 2156, "ms": 590}
    t1 = temperature_targets(sizes, 1.0, 7831)
    assert t1 == sizes  # T=1 is natural
    t_inf = temperature_targets(sizes, 1e9, 400)
    assert all(v == 100 for v in t_inf.values())  # T->inf is uniform
    t3 = temperature_targets(sizes, 3.0, 7831)
    assert sum(t3.values()) == 7831 and t3["ms"] > sizes["ms"] and t3["zh"] < sizes["zh"]
    plan = plan_temperature(corpus_of(PAPER), 0, temperature=3.0)
    s = plan.summary()
    assert s["total"] == sum(PAPER.values()) and s["temperature"] == 3.0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        temperature_targets(sizes, 0, 10)


def test_unknown_strategy_and_empty_corpus():
    with pytest.raises(ValueError, match=r"strategy must be one of \['two-stage', 'temperature', 'natural'\]"):
        make_plan(corpus_of({("en", "a"): 1}), "uniform", 0)
    with pytest.raises(ValueError, match="no utterances"):
        make_plan({}, "two-stage", 0)


def test_attach_counts_then_expand_repeats():
    from polyglot_lion.train.data import expand_repeats

    batch = pa.table({"id": ["a", "b", "c"], "x": [1, 2, 3]})
    out = attach_counts(batch, {"a": 2, "c": 1})
    assert out["id"].to_pylist() == ["a", "c"] and out["count"].to_pylist() == [2, 1]  # b is not in the plan
    rows = list(expand_repeats(out.to_pylist()))
    assert [(r["id"], r["repeat"], r["x"]) for r in rows] == [("a", 0, 1), ("a", 1, 1), ("c", 0, 3)]


def test_shard_order_spreads_datasets():
    files = [f"data/train/{lang}/{ds}/part-{i:05d}.parquet" for lang, ds in (("en", "nsc"), ("zh", "aishell1"),
                                                                               ("ta", "slr127")) for i in range(4)]
    a = shard_order(files, seed=0)
    assert sorted(a) == sorted(files) and a == shard_order(list(reversed(files)), seed=0)  # input order irrelevant
    assert a != shard_order(files, seed=1)
    assert len({f.split("/")[3] for f in a[:4]}) >= 2  # not dataset after dataset


def test_shard_order_passes_each_in_its_own_order():
    files = [f"data/train/en/nsc/part-{i:05d}.parquet" for i in range(6)]
    three = shard_order(files, seed=3, passes=3)
    assert len(three) == 18 and three[:6] == shard_order(files, seed=3)  # pass 0 is the one-pass order
    for p in range(3):
        assert sorted(three[p * 6:(p + 1) * 6]) == sorted(files)  # every pass has every shard once
    assert three[6:12] != three[:6] and three == shard_order(files, seed=3, passes=3)
    with pytest.raises(ValueError, match="passes must be >= 1"):
        shard_order(files, seed=0, passes=0)
