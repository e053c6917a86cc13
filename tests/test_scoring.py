"""Scoring the paper's way (hand-worked counts in all four languages), the benchmark registry, the published
table, and the ``score`` CLI."""

import json
import math

import pytest

from polyglot_lion.cli import main
from polyglot_lion.data.synth import PAPER_TRAIN_HOURS
from polyglot_lion.evaluation.benchmarks import (
    BENCHMARKS,
    COLUMNS,
    INFERENCE_SECONDS_PER_SAMPLE,
    PUBLISHED,
    TRAINING_COST,
    benchmark_for_dataset,
    published_average,
    published_row,
)
from polyglot_lion.evaluation.scoring import (
    Score,
    average_excluding,
    capped_error_rate,
    exact_match_rate,
    language_id_accuracy,
    mean_utterance_error_rate,
    metric_for,
    score,
    score_files,
    score_pairs,
)

# The same Tamil word "கொடு" (give): the vowel sign O as one code point (NFC) or as its two parts.
KODU_NFC = "\u0b95\u0bca\u0b9f\u0bc1"
KODU_DECOMPOSED = "\u0b95\u0bc6\u0bbe\u0b9f\u0bc1"
KODU_LONG_O = "\u0b95\u0bcb\u0b9f\u0bc1"  # "கோடு" (line): another vowel sign, another word


def counts(s: Score) -> tuple:
    return s.substitutions, s.deletions, s.insertions, s.reference_units


def test_metric_for():
    assert [metric_for(x) for x in ("en", "zh", "ta", "ms")] == ["wer", "cer", "wer", "wer"]
    with pytest.raises(ValueError, match=r"\['en', 'ms', 'ta', 'zh'\] \(is 'xx'\)"):
        metric_for("xx")


def test_english_punctuation_inside_words():
    s = score(
        ["Don't stop!", "I saw the cat.", "It is 5 o'clock"],
        ["dont stop", "i saw cat", "it is five oclock"],
        "en",
    )
    # "dont stop" = "dont stop": 2 hits.  "i saw the cat" -> "i saw cat": 1 deletion (the), 3 hits.
    # "it is 5 oclock" -> "it is five oclock": 1 substitution (5 -> five), 3 hits.
    # 10 reference words, 2 edits -> 20%.
    assert counts(s) == (1, 1, 0, 10)
    assert s.hits == 8 and s.utterances == 3 and s.metric == "wer"
    assert s.error_rate == pytest.approx(20.0)


def test_malay_full_width_digits():
    s = score(["Bilik １２３, tingkat ２.", "saya suka makan nasi"], ["bilik 123 tingkat 2", "Saya suka makan nasi lemak"],
              "ms")
    # "bilik 123 tingkat 2" both sides after normalisation: 4 hits.
    # "saya suka makan nasi" -> "... nasi lemak": 1 insertion. 8 reference words, 1 edit -> 12.5%.
    assert counts(s) == (0, 0, 1, 8)
    assert s.error_rate == pytest.approx(12.5)


def test_tamil_combining_marks():
    assert KODU_NFC != KODU_DECOMPOSED  # different code points, same word
    s = score([f"{KODU_NFC} வா", KODU_NFC], [f"{KODU_DECOMPOSED} வா", KODU_LONG_O], "ta")
    # Utterance 1: NFC makes both "கொடு வா": 2 hits.  Utterance 2: கொடு -> கோடு, one word substituted.
    # 3 reference words, 1 edit -> 33.33%.
    assert counts(s) == (1, 0, 0, 3)
    assert s.error_rate == pytest.approx(100 / 3)
    assert score([KODU_DECOMPOSED], [KODU_NFC], "ta").error_rate == 0.0


def test_chinese_cer_ignores_spaces():
    s = score(["我 爱 北京。", "今天天气很好", "你好", "第１２３号"], ["我爱北京", "今天 天气 不好", "你好吗", "第 123 号"], "zh")
    # "我爱北京" vs "我爱北京": 4 hits.  "今天天气很好" vs "今天天气不好": 1 substitution (很 -> 不), 5 hits.
    # "你好" vs "你好吗": 1 insertion.  "第123号" vs "第 123 号" (spaces removed for CER): 5 hits.
    # 4 + 6 + 2 + 5 = 17 reference characters, 2 edits.
    assert counts(s) == (1, 0, 1, 17)
    assert s.metric == "cer" and s.hits == 16
    assert s.error_rate == pytest.approx(200 / 17)


def test_empty_references_dropped_and_counted():
    s = score(["", "¡!", "hello world"], ["something", "x", "hello world"], "en")
    # "" and "¡!" (punctuation only) normalise to nothing: dropped, and their hypotheses are not scored.
    assert s.utterances == 1 and s.dropped_empty_refs == 2
    assert counts(s) == (0, 0, 0, 2) and s.error_rate == 0.0
    with pytest.raises(ValueError, match="all 2 references are empty"):
        score(["", "..."], ["a", "b"], "en")


def test_missing_hypothesis_is_all_deletions():
    s = score(["one two three"], [None], "en")
    assert counts(s) == (0, 3, 0, 3) and s.error_rate == 100.0
    assert score_pairs([("one two three", "")], "en") == s


def test_pooled_differs_from_mean_of_utterances():
    refs = ["good morning", "one two three four five six seven eight"]
    hyps = ["good evening", "one two three four five six seven eight"]
    # Utterance 1: 1 substitution of 2 words = 50%; utterance 2: 0 of 8 = 0%.
    # Pooled (the paper): 1 / 10 = 10%.  Mean of per-utterance rates: (50 + 0) / 2 = 25%.
    assert score(refs, hyps, "en").error_rate == pytest.approx(10.0)
    assert mean_utterance_error_rate(refs, hyps, "en") == pytest.approx(25.0)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="same length"):
        score(["a", "b"], ["a"], "en")


def test_average_excluding_above_200_and_cap():
    # 250 is above 200 and left out; 200 itself is kept; None (not run) is skipped: (10 + 20 + 200) / 3.
    assert average_excluding([10.0, 20.0, 250.0, None, 200.0]) == pytest.approx(230 / 3)
    assert average_excluding([250.0, None]) is None
    looping = score(["hi"], ["hi hi hi hi"], "en")  # 3 insertions on 1 word: 300%
    assert looping.error_rate == pytest.approx(300.0)
    assert capped_error_rate(looping.error_rate) == 100.0 and capped_error_rate(12.5) == 12.5


def test_exact_match_rate():
    # "", dropped; "hello world" matches after normalisation; "good day" != "good night": 1 of 2.
    assert exact_match_rate(["Hello, World!", "good day", ""], ["hello world", "good night", "x"]) == 50.0
    assert exact_match_rate(["我爱你"], ["我 爱 你。"], "zh") == 100.0


def test_language_id_accuracy():
    r = language_id_accuracy(["en", "zh", "ta", "ms", "en"], ["English", "zh", None, "None", "Malay"])
    # English == en, zh == zh: 2 correct; None and "None": not identified; Malay for en: wrong.
    assert (r.correct, r.total, r.unidentified, r.wrong) == (2, 5, 2, 1)
    assert r.accuracy == pytest.approx(40.0)
    with pytest.raises(ValueError, match="same length"):
        language_id_accuracy(["en"], [])
    with pytest.raises(ValueError, match="'klingon'"):
        language_id_accuracy(["klingon"], ["en"])


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def test_score_files_join_missing_and_extra(tmp_path):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "a", "text": "one two"}, {"id": "b", "text": "three four"},
                                                 "", {"id": "c", "text": "?"}])
    hyps = write_jsonl(tmp_path / "hyps.jsonl", [{"id": "b", "text": "three for"}, {"id": "a", "text": "one two"},
                                                 {"id": "zz", "text": "stray"}])
    s = score_files(refs, hyps, "en")
    # a: 2 hits; b: 1 substitution; c: empty reference, dropped (missing its hypothesis too: counted, not scored).
    assert counts(s) == (1, 0, 0, 4) and s.utterances == 2 and s.dropped_empty_refs == 1
    assert (s.missing_hypotheses, s.extra_hypotheses) == (1, 1)
    no_b = write_jsonl(tmp_path / "no_b.jsonl", [{"id": "a", "text": "one two"}])
    assert counts(score_files(refs, no_b, "en")) == (0, 2, 0, 4)  # b missing: both words deleted


@pytest.mark.parametrize("line, message", [
    ("{not json", r"hyps.jsonl:2: not valid JSON"),
    ('["a", "b"]', r"hyps.jsonl:2: must be a JSON object"),
    ('{"text": "x"}', r"hyps.jsonl:2: 'id' must be a non-empty string \(is None\)"),
    ('{"id": "b", "text": null}', r"hyps.jsonl:2: 'text' must be a string \(is None\)"),
    ('{"id": "a", "text": "again"}', r"hyps.jsonl:2: id 'a' repeats line 1"),
])
def test_score_files_bad_lines(tmp_path, line, message):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "a", "text": "x"}])
    hyps = write_jsonl(tmp_path / "hyps.jsonl", [{"id": "a", "text": "x"}, line])
    with pytest.raises(ValueError, match=message):
        score_files(refs, hyps, "en")


def test_score_cli_json(tmp_path, capsys):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "1", "text": "今天天气很好"}, {"id": "2", "text": "你好"}])
    hyps = write_jsonl(tmp_path / "hyps.jsonl", [{"id": "1", "text": "今天 天气 不好"}, {"id": "9", "text": "多余"}])
    assert main(["score", "--refs", refs, "--hyps", hyps, "--language", "zh", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    # 1: one substitution of 6 characters; 2: hypothesis missing, 2 deletions. 3 edits / 8 characters.
    assert list(out)[:7] == ["metric", "error_rate", "utterances", "substitutions", "deletions", "insertions",
                             "reference_units"]
    assert out["metric"] == "cer" and out["error_rate"] == pytest.approx(37.5)
    assert (out["utterances"], out["substitutions"], out["deletions"], out["insertions"],
            out["reference_units"]) == (2, 1, 2, 0, 8)
    assert (out["missing_hypotheses"], out["extra_hypotheses"], out["dropped_empty_refs"]) == (1, 1, 0)

    assert main(["score", "--refs", refs, "--hyps", hyps, "--language", "zh"]) == 0
    assert capsys.readouterr().out.startswith("CER 37.50% over 2 utterances")


def test_score_cli_errors(tmp_path, capsys):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "1", "text": "hello"}])
    assert main(["score", "--refs", refs, "--hyps", refs, "--language", "xx", "--json"]) == 2
    err = capsys.readouterr().err
    assert "--language" in err and "'xx'" in err and "'zh'" in err
    assert main(["score", "--refs", refs, "--hyps", str(tmp_path / "nope.jsonl"), "--language", "en"]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"id": "1"}'])
    assert main(["score", "--refs", refs, "--hyps", bad, "--language", "en"]) == 2
    assert "bad.jsonl:1: 'text' must be a string" in capsys.readouterr().err


# ---- the benchmark registry and the published table ----------------------------------------------------

def test_benchmarks_cover_the_store_datasets():
    assert COLUMNS == ("LS", "NSC", "CVzh", "A1", "A3", "Fzh", "CVta", "S65", "S127", "Fta", "Meso", "Fms")
    assert set(BENCHMARKS) == {name for name, _, _ in PAPER_TRAIN_HOURS}
    for name, language, _ in PAPER_TRAIN_HOURS:
        b = benchmark_for_dataset(name)
        assert b.key == name and b.language == language and b.metric == metric_for(language)
    assert sum(b.test_utterances for b in BENCHMARKS.values() if b.language == "zh") == 9999 + 7176 + 24773 + 945


@pytest.mark.parametrize("alias, key", [
    ("librispeech-clean", "librispeech"), ("LibriSpeech_test_clean", "librispeech"), ("aishell-1", "aishell1"),
    ("AISHELL_3", "aishell3"), ("common_voice_zh", "cv-zh"), ("CVzh", "cv-zh"), ("cv_ta", "cv-ta"),
    ("openslr-65", "slr65"), ("S127", "slr127"), ("fleurs_cmn_hans_cn", "fleurs-zh"), ("Meso", "mesolitica"),
    ("fleurs-ms", "fleurs-ms"),
])
def test_dataset_aliases(alias, key):
    assert benchmark_for_dataset(alias).key == key


def test_unknown_dataset_is_none():
    assert benchmark_for_dataset("my-own-test-set") is None


def test_published_table_shape_and_extras():
    assert [r.model for r in PUBLISHED][-2:] == ["Polyglot-Lion-0.6B", "Polyglot-Lion-1.7B"]
    assert all(list(r.rates) == list(BENCHMARKS) for r in PUBLISHED)
    assert published_row("Polyglot-Lion-1.7B").by_column()["S65"] == 19.75
    assert TRAINING_COST["Polyglot-Lion"].hours == 48 and TRAINING_COST["Polyglot-Lion"].usd == 81
    assert INFERENCE_SECONDS_PER_SAMPLE["MERaLiON-2-10B-ASR"][0] == 2.0152


# Whether the published Avg equals (to its 2 printed decimals) the mean with results above 200% left out
# (the stated rule), and the plain mean of all twelve. Found, not forced: the Avg column is the plain mean.
AVG_MATCHES = {  # model: (stated rule matches, plain mean matches)
    "Whisper-large-v3-turbo": (True, True),
    "SeaLLMs-Audio-7B": (True, True),  # 63.745 rounds half-up to 63.75
    "Qwen2.5-Omni-3B": (False, False),  # excluding: 44.66; plain mean 172.41; printed 172.37
    "Qwen2.5-Omni-7B": (False, True),  # excluding: 37.48; plain mean 118.452; printed 118.45
    "Qwen3-ASR-0.6B": (True, True),
    "Qwen3-ASR-1.7B": (True, True),
    "MERaLiON-2-10B-ASR": (False, False),  # mean 14.313; printed 14.32
    "Polyglot-Lion-0.6B": (True, True),
    "Polyglot-Lion-1.7B": (True, True),  # 14.845 rounds half-up to 14.85
}


@pytest.mark.parametrize("row", PUBLISHED, ids=lambda r: r.model)
def test_published_average_against_avg_column(row):
    def matches(x):
        return abs(x - row.avg) <= 0.005 + 1e-9

    stated, plain = published_average(row), average_excluding(row.rates.values(), limit=math.inf)
    assert (matches(stated), matches(plain)) == AVG_MATCHES[row.model]
    if max(row.rates.values()) <= 200:
        assert stated == plain
