"""Scoring exactly as the paper does: WER for en/ta/ms, CER for zh, corpus-level, after normalisation.

Convention (paper, section 5.1 and section 3):
- hypotheses and references both go through ``polyglot_lion.data.text.normalize_text`` (NFC, full-width ->
  half-width, lowercase, punctuation deleted, symbols -> spaces, spaces between CJK characters removed);
- WER counts whitespace-separated words; CER counts characters with every space removed first;
- the rate is POOLED over a test set: (S + D + I) / reference units, in percent. A mean of per-utterance
  rates is a different (and noisier) number; see ``mean_utterance_error_rate`` for the contrast;
- an utterance whose normalised reference is empty cannot be scored: it is dropped and counted;
  a missing or empty hypothesis scores as all deletions;
- averages over benchmarks leave out results above 200% (``average_excluding``).

Edit counts come from jiwer (Levenshtein alignment via rapidfuzz). Where alignments of equal cost exist
(e.g. "a b c" -> "a c d": two substitutions, or one deletion plus one insertion) the split between S, D
and I follows jiwer's choice; the total and the rate do not depend on it.

    from polyglot_lion.evaluation.scoring import score
    score(["Don't stop."], ["dont stop"], "en").error_rate   # 0.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer

from ..data.schema import LANGUAGES
from ..data.text import normalize_text

METRICS: dict[str, str] = {"en": "wer", "zh": "cer", "ta": "wer", "ms": "wer"}
UNIDENTIFIED = "None"  # what Qwen3-ASR writes after "language " when it cannot tell


def metric_for(language: str) -> str:
    """'cer' for Mandarin, 'wer' for English, Tamil and Malay."""
    if language not in METRICS:
        raise ValueError(f"language must be one of {sorted(METRICS)} (is {language!r})")
    return METRICS[language]


def units(text: str, metric: str) -> list[str]:
    """The units an already-normalised text is scored in: words for WER, non-space characters for CER."""
    return list(text.replace(" ", "")) if metric == "cer" else text.split()


@dataclass(frozen=True)
class Score:
    """One test set scored. ``error_rate`` is in percent and pooled: 100 * (S + D + I) / reference_units."""

    metric: str
    error_rate: float
    utterances: int
    substitutions: int
    deletions: int
    insertions: int
    reference_units: int
    hits: int
    dropped_empty_refs: int = 0
    missing_hypotheses: int = 0  # score_files: references with no hypothesis line (scored as empty)
    extra_hypotheses: int = 0  # score_files: hypothesis ids with no reference (ignored)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def to_dict(self) -> dict:
        return asdict(self)


def _check_pairs(refs: Sequence[str], hyps: Sequence[str | None]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps must have the same length (are {len(refs)} and {len(hyps)})")
    for i, (r, h) in enumerate(zip(refs, hyps)):
        if not isinstance(r, str):
            raise TypeError(f"reference {i} must be a string (is {type(r).__name__}: {r!r})")
        if h is not None and not isinstance(h, str):
            raise TypeError(f"hypothesis {i} must be a string or None (is {type(h).__name__}: {h!r})")


def _normalised_pairs(refs: Sequence[str], hyps: Sequence[str | None], metric: str) -> tuple[list, list, int]:
    """Normalised (ref, hyp) texts, spaces removed for CER; pairs with an empty reference dropped and counted."""
    kept_refs, kept_hyps, dropped = [], [], 0
    for r, h in zip(refs, hyps):
        r_units = units(normalize_text(r), metric)
        if not r_units:
            dropped += 1
            continue
        h_units = units(normalize_text(h or ""), metric)
        joiner = "" if metric == "cer" else " "
        kept_refs.append(joiner.join(r_units))
        kept_hyps.append(joiner.join(h_units))
    return kept_refs, kept_hyps, dropped


def score(refs: Sequence[str], hyps: Sequence[str | None], language: str) -> Score:
    """Score a test set in one language. A hypothesis of None means 'missing' and scores as empty.

    Raises ValueError when nothing is left to score (every reference empty after normalisation).
    """
    metric = metric_for(language)
    _check_pairs(refs, hyps)
    kept_refs, kept_hyps, dropped = _normalised_pairs(refs, hyps, metric)
    if not kept_refs:
        raise ValueError(f"nothing to score: all {len(refs)} references are empty after normalisation")
    process = jiwer.process_characters if metric == "cer" else jiwer.process_words
    out = process(kept_refs, kept_hyps)
    n_ref = sum(len(units(r, metric)) for r in kept_refs)
    assert out.hits + out.substitutions + out.deletions == n_ref, "alignment does not cover the reference"
    edits = out.substitutions + out.deletions + out.insertions
    return Score(metric=metric, error_rate=100.0 * edits / n_ref, utterances=len(kept_refs),
                 substitutions=out.substitutions, deletions=out.deletions, insertions=out.insertions,
                 reference_units=n_ref, hits=out.hits, dropped_empty_refs=dropped)


def score_pairs(pairs: Iterable[tuple[str, str | None]], language: str) -> Score:
    """``score`` for (reference, hypothesis) pairs."""
    pairs = list(pairs)
    return score([r for r, _ in pairs], [h for _, h in pairs], language)


def mean_utterance_error_rate(refs: Sequence[str], hyps: Sequence[str | None], language: str) -> float:
    """The mean of per-utterance rates, in percent. NOT the paper's metric: it weighs a 2-word utterance as
    much as a 40-word one. Here only to show, and test, the difference from the pooled ``score``."""
    metric = metric_for(language)
    _check_pairs(refs, hyps)
    kept_refs, kept_hyps, _ = _normalised_pairs(refs, hyps, metric)
    if not kept_refs:
        raise ValueError(f"nothing to score: all {len(refs)} references are empty after normalisation")
    rates = [score([r], [h], language).error_rate for r, h in zip(kept_refs, kept_hyps)]
    return sum(rates) / len(rates)


def capped_error_rate(rate: float, cap: float = 100.0) -> float:
    """An error rate clipped to ``cap`` percent: looping outputs early in training push WER/CER above 100%."""
    return min(rate, cap)


def exact_match_rate(refs: Sequence[str], hyps: Sequence[str | None], language: str | None = None) -> float:
    """Percent of utterances whose normalised hypothesis equals the normalised reference.

    Empty references are dropped as in ``score``; for a CER language (zh) spaces are ignored too.
    """
    _check_pairs(refs, hyps)
    metric = metric_for(language) if language is not None else "wer"
    kept_refs, kept_hyps, _ = _normalised_pairs(refs, hyps, metric)
    if not kept_refs:
        raise ValueError(f"nothing to score: all {len(refs)} references are empty after normalisation")
    return 100.0 * sum(r == h for r, h in zip(kept_refs, kept_hyps)) / len(kept_refs)


def average_excluding(rates: Iterable[float | None], limit: float = 200.0) -> float | None:
    """The paper's overall average: the mean of the rates at or below ``limit`` percent (results above 200%
    are left out). None entries (benchmark not run) are skipped; None when nothing is left to average."""
    kept = [r for r in rates if r is not None and not math.isnan(r) and r <= limit]
    return sum(kept) / len(kept) if kept else None


# ---- language identification --------------------------------------------------------------------------

_LANGUAGE_BY_NAME = {name.lower(): code for code, name in LANGUAGES.items()}
_LANGUAGE_BY_NAME.update({code: code for code in LANGUAGES})
_LANGUAGE_BY_NAME.update({"mandarin": "zh", "malay": "ms"})


def canonical_language(value: str | None) -> str | None:
    """'en'/'English'/'english' -> 'en'; None, '', 'None' -> None (not identified); other text returned as is."""
    if value is None or value.strip() in ("", UNIDENTIFIED):
        return None
    return _LANGUAGE_BY_NAME.get(value.strip().lower(), value.strip())


@dataclass(frozen=True)
class LanguageIdScore:
    """How often the model's emitted language matched the test set's. ``accuracy`` in percent."""

    accuracy: float
    correct: int
    total: int
    unidentified: int  # predictions of None / 'None' / '' (counted as wrong)
    wrong: int  # a language was named, but not the right one

    def to_dict(self) -> dict:
        return asdict(self)


def language_id_accuracy(expected_langs: Sequence[str], predicted_langs: Sequence[str | None]) -> LanguageIdScore:
    """Compare expected language codes with what the model emitted (codes or names such as 'English')."""
    if len(expected_langs) != len(predicted_langs):
        raise ValueError(f"expected_langs and predicted_langs must have the same length "
                         f"(are {len(expected_langs)} and {len(predicted_langs)})")
    if not expected_langs:
        raise ValueError("language_id_accuracy needs at least one utterance")
    correct = unidentified = 0
    for i, (e, p) in enumerate(zip(expected_langs, predicted_langs)):
        code = canonical_language(e)
        if code not in LANGUAGES:
            raise ValueError(f"expected language {i} must be one of {sorted(LANGUAGES)} (is {e!r})")
        pred = canonical_language(p)
        unidentified += pred is None
        correct += pred == code
    total = len(expected_langs)
    return LanguageIdScore(accuracy=100.0 * correct / total, correct=correct, total=total,
                           unidentified=unidentified, wrong=total - correct - unidentified)


# ---- files ------------------------------------------------------------------------------------------------

def _transcript_problem(obj) -> str | None:
    """What is wrong with one decoded JSONL line, or None. An integer id is accepted (and read as a string)."""
    if not isinstance(obj, dict):
        return f"must be a JSON object with 'id' and 'text' (is {type(obj).__name__})"
    uid, text = obj.get("id"), obj.get("text")
    if isinstance(uid, bool) or not isinstance(uid, (str, int)) or uid == "":
        return f"'id' must be a non-empty string (is {uid!r})"
    if not isinstance(text, str):
        return f"'text' must be a string (is {text!r})"
    return None


def read_transcripts(path: str | Path) -> dict[str, str]:
    """A JSONL file of {"id": ..., "text": ...} lines -> {id: text}. Blank lines are skipped; anything else
    that is not such an object, or a repeated id, raises ValueError naming the file and line."""
    path = Path(path)
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            problem = _transcript_problem(obj)
            if problem:
                raise ValueError(f"{where}: {problem}")
            uid, text = str(obj["id"]), obj["text"]
            if uid in out:
                raise ValueError(f"{where}: id {uid!r} repeats line {first_line[uid]}")
            out[uid] = text
            first_line[uid] = lineno
    return out


def score_files(refs_path: str | Path, hyps_path: str | Path, language: str) -> Score:
    """Score two JSONL files of {"id", "text"} joined by id. A reference without a hypothesis scores as an
    empty hypothesis (counted in ``missing_hypotheses``); hypotheses without a reference are ignored and
    counted in ``extra_hypotheses``."""
    metric_for(language)  # fail on a bad language before reading files
    refs = read_transcripts(refs_path)
    hyps = read_transcripts(hyps_path)
    if not refs:
        raise ValueError(f"{refs_path}: no references")
    ids = list(refs)
    result = score([refs[i] for i in ids], [hyps.get(i) for i in ids], language)
    missing = sum(i not in hyps for i in ids)
    extra = sum(i not in refs for i in hyps)
    return Score(**{**result.to_dict(), "missing_hypotheses": missing, "extra_hypotheses": extra})
