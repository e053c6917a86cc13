"""The synthetic corpus, and the CLI end to end: synth -> prepare -> stats -> balance, JSON shapes exact."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from polyglot_lion.data.balance import read_balanced, read_plan
from polyglot_lion.data.schema import LANGUAGES
from polyglot_lion.data.synth import PAPER_TRAIN_HOURS, make_sentence, synthesize_corpus
from polyglot_lion.train.data import expand_repeats


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "polyglot_lion.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1"))
    if check and proc.returncode != 0:
        raise AssertionError(f"polyglot-lion {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    specs = synthesize_corpus(str(out), train_utterances=60, eval_utterances=2, seed=3, progress=False)
    return out, specs


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_synth_layout_and_skew(corpus):
    out, specs = corpus
    assert len(specs) == 12 * 3
    assert {s["language"] for s in specs} == set(LANGUAGES)
    assert json.loads((out / "corpus.json").read_text()) == specs
    n = {s["dataset"]: len(read_jsonl(s["input"])) for s in specs if s["split"] == "train"}
    assert n["nsc"] > n["librispeech"] > n["fleurs-ms"]  # the paper's skew
    assert n["aishell1"] > n["cv-zh"]
    for s in specs:
        for line in read_jsonl(s["input"]):
            assert (Path(s["input"]).parent / line["audio"]).is_file()


def test_synth_eval_sentences_are_unseen(corpus):
    _, specs = corpus
    for name, lang, _ in PAPER_TRAIN_HOURS:
        texts = {sp: {x["text"] for x in read_jsonl(s["input"])} for sp in ("train", "dev", "test")
                 for s in specs if s["dataset"] == name and s["split"] == sp}
        assert not (texts["test"] & texts["train"]) and not (texts["dev"] & texts["train"])


def test_sentences_are_in_their_script():
    import numpy as np

    rng = np.random.default_rng(0)
    zh = make_sentence("zh", rng)
    assert all("\u4e00" <= c <= "\u9fff" or c in "，。？" for c in zh.raw_text)
    assert any(ch.isdigit() for ch in zh.spoken)  # tone numbers for the pinyin voice
    ta = make_sentence("ta", rng)
    assert any("\u0b80" <= c <= "\u0bff" for c in ta.raw_text)


def test_synth_is_seeded(tmp_path):
    a = synthesize_corpus(str(tmp_path / "a"), 12, 1, seed=5, languages=("ms",), progress=False)
    b = synthesize_corpus(str(tmp_path / "b"), 12, 1, seed=5, languages=("ms",), progress=False)
    c = synthesize_corpus(str(tmp_path / "c"), 12, 1, seed=6, languages=("ms",), progress=False)
    texts = lambda specs: [x["text"] for s in specs for x in read_jsonl(s["input"])]  # noqa: E731
    assert texts(a) == texts(b) and texts(a) != texts(c)


def test_help_on_every_subcommand():
    assert "synth" in cli("--help").stdout
    for sub in ("synth", "prepare", "balance", "stats", "convert", "train"):
        assert "usage: polyglot-lion " + sub in cli(sub, "--help").stdout


def test_bad_arguments_are_named(tmp_path):
    p = cli("prepare", "--format", "jsonl", "--input", str(tmp_path), "--dataset", "x", "--language", "fr",
            "--split", "train", "--store", str(tmp_path / "s"), check=False)
    assert p.returncode == 2 and "language must be one of ['en', 'ms', 'ta', 'zh'] (is 'fr')" in p.stderr
    p = cli("prepare", "--store", str(tmp_path / "s"), "--format", "jsonl", check=False)
    assert p.returncode == 2 and "--input, --dataset, --language, --split" in p.stderr
    p = cli("stats", "--store", str(tmp_path / "nowhere"), check=False)
    assert p.returncode == 2 and "run 'polyglot-lion prepare' first" in p.stderr
    p = cli("balance", "--store", str(tmp_path), "--out", str(tmp_path / "p"), "--strategy", "random", check=False)
    assert p.returncode == 2 and "invalid choice: 'random'" in p.stderr


@pytest.mark.ray
def test_cli_end_to_end(corpus, tmp_path, ray_session):
    out, specs = corpus
    store = tmp_path / "store"
    prep = json.loads(cli("prepare", "--specs", str(out / "corpus.json"), "--store", str(store), "--json",
                          "--num-cpus", "2").stdout)
    assert len(prep["imports"]) == 36 and all(m["utterances"] > 0 for m in prep["imports"])

    stats = json.loads(cli("stats", "--store", str(store), "--json").stdout)
    assert set(stats) == {"datasets", "languages"}
    assert set(stats["datasets"]) == {f"{name}/{sp}" for name, _, _ in PAPER_TRAIN_HOURS
                                      for sp in ("train", "dev", "test")}
    for v in stats["datasets"].values():
        assert set(v) == {"language", "split", "utterances", "hours", "rejected"}
    assert set(stats["languages"]) == set(LANGUAGES)
    assert all(set(v) == {"utterances", "hours"} for v in stats["languages"].values())
    train_stats = json.loads(cli("stats", "--store", str(store), "--split", "train", "--json").stdout)
    assert set(train_stats["datasets"]) == {name for name, _, _ in PAPER_TRAIN_HOURS}  # one split: plain names

    plot = tmp_path / "mix.png"
    bal = json.loads(cli("balance", "--store", str(store), "--split", "train", "--strategy", "two-stage",
                         "--seed", "1", "--out", str(tmp_path / "plan"), "--json", "--plot", str(plot)).stdout)
    assert set(bal) == {"strategy", "seed", "total", "languages"}
    assert bal["strategy"] == "two-stage" and bal["seed"] == 1
    per_lang = {lang: v["utterances"] for lang, v in bal["languages"].items()}
    assert len(set(per_lang.values())) == 1 and bal["total"] == 4 * per_lang["en"]
    for v in bal["languages"].values():
        assert set(v) == {"utterances", "stage1", "datasets"} and sum(v["datasets"].values()) == v["utterances"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from polyglot_lion.data.store import store_fingerprint

    made = json.loads((tmp_path / "plan" / "summary.json").read_text())  # what train checks the store against
    assert made["store_fingerprint"] == store_fingerprint(str(store), "train")
    assert sum(made["store_rows_per_dataset"].values()) == sum(v["utterances"] for v in train_stats["datasets"].values())
    table = cli("balance", "--store", str(store), "--out", str(tmp_path / "plan2"), "--strategy", "natural").stdout
    assert "strategy natural" in table

    # the Ray Data adapter streams the store through the plan: same multiset of (id, repeat)
    plan = read_plan(str(tmp_path / "plan"))
    once = read_balanced(str(store), str(tmp_path / "plan"), columns=["id", "language", "audio"]).take_all()
    assert len({r["id"] for r in once}) == len(once) == len(set(plan["id"].to_pylist()))  # each utterance once
    rows = list(expand_repeats(once))
    assert len(rows) == plan.num_rows
    assert Counter((r["id"], r["repeat"]) for r in rows) == Counter(
        zip(plan["id"].to_pylist(), plan["repeat"].to_pylist()))
    assert all(r["audio"][:4] == b"fLaC" for r in rows[:5])
    # two epochs in one read: each row twice (data.plan_passes)
    twice = list(expand_repeats(read_balanced(str(store), str(tmp_path / "plan"), columns=["id"], passes=2).take_all()))
    assert Counter((r["id"], r["repeat"]) for r in twice) == Counter(
        {k: 2 * v for k, v in Counter(zip(plan["id"].to_pylist(), plan["repeat"].to_pylist())).items()})


def test_job_entrypoints_have_help():
    root = Path(__file__).resolve().parents[1]
    for job, sub in (("prepare.py", "prepare"), ("balance.py", "balance"), ("train.py", "train")):
        p = subprocess.run([sys.executable, str(root / "jobs" / job), "--help"], capture_output=True, text=True,
                           timeout=60, cwd="/")
        assert p.returncode == 0 and f"usage: polyglot-lion {sub}" in p.stdout, p.stderr
