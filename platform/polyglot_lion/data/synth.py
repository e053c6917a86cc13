"""A synthetic, skewed, four-language speech corpus made with espeak-ng (no corpus can be downloaded here).

    polyglot-lion synth --out corpus/ --train-utterances 600 --seed 0

Writes, per dataset, ``{dataset}/{split}.jsonl`` manifests (``audio`` relative to the manifest, ``text``
with capitals and punctuation so the normaliser has work) and 22.05 kHz WAV clips, plus ``corpus.json``:
the list of imports for ``polyglot-lion prepare --specs corpus/corpus.json``. Dataset sizes follow the
paper's Table 1 train hours (English and Mandarin plentiful, Malay scarce); dev and test sentences never
occur in train. Same seed, same corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime import progress_bar
from . import wordlists
from .schema import LANGUAGES, SPLITS

# (dataset, language, paper train hours): the shape of the paper's Table 1.
PAPER_TRAIN_HOURS: list[tuple[str, str, float]] = [
    ("librispeech", "en", 100.59), ("nsc", "en", 147.97),
    ("aishell1", "zh", 150.85), ("aishell3", "zh", 56.86), ("cv-zh", "zh", 42.43), ("fleurs-zh", "zh", 9.73),
    ("slr127", "ta", 119.86), ("cv-ta", "ta", 81.38), ("slr65", "ta", 5.66), ("fleurs-ta", "ta", 8.68),
    ("mesolitica", "ms", 49.43), ("fleurs-ms", "ms", 9.55),
]
VOICES = {"en": "en", "zh": "cmn-latn-pinyin", "ta": "ta", "ms": "ms"}
VARIANTS = ["m1", "m3", "m7", "f1", "f3", "f4"]


class EspeakMissing(RuntimeError):
    pass


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if not path:
        raise EspeakMissing(
            "espeak-ng is not installed: the synthetic corpus needs it. Install the Debian package "
            "'espeak-ng' (apt-get install espeak-ng), or run 'make setup' as root."
        )
    return path


@dataclass(frozen=True)
class Sentence:
    raw_text: str  # what the transcript says (characters for Mandarin)
    spoken: str  # what espeak-ng is given (pinyin for Mandarin)


def make_sentence(language: str, rng: np.random.Generator, min_words: int = 2, max_words: int = 8) -> Sentence:
    """A random sentence of real words, written the way a corpus would (capitals, punctuation)."""
    n = int(rng.integers(min_words, max_words + 1))
    if language == "zh":
        words = [wordlists.MANDARIN[i] for i in rng.integers(0, len(wordlists.MANDARIN), n)]
        chars = "".join(w[0] for w in words)
        if n > 4 and rng.random() < 0.3:
            cut = sum(len(w[0]) for w in words[: n // 2])
            chars = chars[:cut] + "，" + chars[cut:]
        end = "。" if rng.random() < 0.8 else "？"
        return Sentence(chars + end, " ".join(w[1] for w in words))
    vocab = {"en": wordlists.ENGLISH, "ms": wordlists.MALAY, "ta": wordlists.TAMIL}[language]
    words = [vocab[i] for i in rng.integers(0, len(vocab), n)]
    spoken = " ".join(words)
    if language != "ta":
        words[0] = words[0].capitalize()
    if n > 4 and rng.random() < 0.3:
        words[n // 2 - 1] += ","
    text = " ".join(words) + ("." if rng.random() < 0.8 else "?")
    return Sentence(text, spoken)


def dataset_sizes(train_utterances: int, min_per_dataset: int = 4) -> dict[str, int]:
    total_hours = sum(h for _, _, h in PAPER_TRAIN_HOURS)
    return {name: max(min_per_dataset, round(train_utterances * h / total_hours)) for name, _, h in PAPER_TRAIN_HOURS}


def _speak(espeak: str, voice: str, speed: int, pitch: int, text: str, path: str) -> None:
    subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, text],
                   check=True, capture_output=True, timeout=60)


def synthesize_corpus(
    out: str,
    train_utterances: int = 600,
    eval_utterances: int = 6,
    seed: int = 0,
    min_words: int = 2,
    max_words: int = 8,
    languages: tuple[str, ...] = tuple(LANGUAGES),
    workers: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Write the corpus; returns the import specs (also written to ``out/corpus.json``)."""
    espeak = espeak_binary()
    rng = np.random.default_rng(seed)
    sizes = dataset_sizes(train_utterances)
    jobs, specs = [], []
    for d_index, (name, lang, _) in enumerate(PAPER_TRAIN_HOURS):
        if lang not in languages:
            continue
        # each "dataset" has its own speakers and speaking rate, like real corpora differ
        d_rng = np.random.default_rng([seed, d_index])
        variants = list(d_rng.choice(VARIANTS, size=3, replace=False))
        base_speed = int(d_rng.integers(150, 185))
        train_texts: set[str] = set()
        for split in SPLITS:
            n = sizes[name] if split == "train" else eval_utterances
            ddir = Path(out) / name
            (ddir / "audio" / split).mkdir(parents=True, exist_ok=True)
            lines = []
            for k in range(n):
                s = make_sentence(lang, rng, min_words, max_words)
                while split != "train" and s.raw_text in train_texts:
                    s = make_sentence(lang, rng, min_words, max_words)
                if split == "train":
                    train_texts.add(s.raw_text)
                variant = variants[k % len(variants)]
                speed = int(np.clip(base_speed + rng.integers(-15, 16), 130, 210))
                pitch = int(rng.integers(35, 66))
                rel = f"audio/{split}/{name}-{split}-{k:06d}.wav"
                jobs.append((f"{VOICES[lang]}+{variant}", speed, pitch, s.spoken, str(ddir / rel)))
                lines.append({"id": f"{name}-{split}-{k:06d}", "audio": rel, "text": s.raw_text,
                              "speaker": f"{name}-{variant}"})
            with open(ddir / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            specs.append({"format": "jsonl", "input": str((ddir / f"{split}.jsonl").resolve()),
                          "dataset": name, "language": lang, "split": split})
    _run_jobs(espeak, jobs, workers or os.cpu_count() or 1, progress)
    with open(Path(out) / "corpus.json", "w", encoding="utf-8") as f:
        json.dump(specs, f, indent=1)
    return specs


def _run_jobs(espeak: str, jobs: list[tuple], workers: int, progress) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_speak, espeak, *j) for j in jobs]
        with progress_bar(progress, total=len(futures), desc="espeak-ng", unit="clip") as bar:
            for fut in futures:
                fut.result()
                bar.update()


def corpus_hours(specs: list[dict]) -> float:
    import soundfile as sf

    total = 0.0
    for s in specs:
        base = os.path.dirname(s["input"])
        with open(s["input"], encoding="utf-8") as f:
            for line in f:
                total += sf.info(os.path.join(base, json.loads(line)["audio"])).duration
    return total / 3600.0


