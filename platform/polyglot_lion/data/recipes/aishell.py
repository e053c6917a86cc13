"""AISHELL-1 and AISHELL-3 (Mandarin), as openslr.org ships them."""

from __future__ import annotations

import os
from pathlib import Path

from ..importers import _item
from . import Listing, Recipe, RecipeOptions
from ._common import find_dir, has_surrogates, read_lines

AISHELL1_TRANSCRIPT = "transcript/aishell_transcript_v0.8.txt"


def list_aishell1(root: str, opts: RecipeOptions) -> Listing:
    """``data_aishell/transcript/aishell_transcript_v0.8.txt`` (one file for all splits, word-segmented) and
    ``data_aishell/wav/<spk>.tar.gz`` (members ``{train,dev,test}/<spk>/<utt>.wav``), read in place; the split
    comes from the member's folder. Already-unpacked ``wav/{train,dev,test}/<spk>/*.wav`` work too."""
    base = find_dir(root, "data_aishell") or Path(root)
    transcript = base / AISHELL1_TRANSCRIPT
    if not transcript.is_file():
        raise ValueError(f"{root}: no {AISHELL1_TRANSCRIPT} (in it or in data_aishell/); unpack data_aishell.tgz "
                         f"(the per-speaker wav/*.tar.gz inside may stay packed)")
    wav = base / "wav"
    archives = {p.name.split(".")[0]: p for p in sorted(wav.glob("*.tar.gz"))} if wav.is_dir() else {}
    loose = {p.stem: p for p in sorted(wav.glob("*/*/*.wav"))} if wav.is_dir() else {}
    out = Listing()
    lines, _ = read_lines(transcript)
    speakers_with_text: set[str] = set()
    for n, line in enumerate(lines, 1):
        src = f"{transcript}:{n}"
        if not line.strip():
            continue
        key, _, text = line.strip().partition(" ")
        if has_surrogates(line):
            out.reject(src, "undecodable_text", "transcript line is not valid UTF-8")
            continue
        speaker = key[6:11]
        speakers_with_text.add(speaker)
        if key in loose:
            split = loose[key].parent.parent.name
            out.items.append(_item(key, text, src, audio_path=str(loose[key]), speaker=speaker, split=split))
        elif speaker in archives:  # split and member found while the task reads the archive
            out.items.append(_item(key, text, src, speaker=speaker, archive=str(archives[speaker])))
        else:
            out.reject(src, "missing_audio", f"no wav/{speaker}.tar.gz and no wav/*/{speaker}/{key}.wav")
    for speaker, archive in archives.items():
        if speaker not in speakers_with_text:
            out.reject(str(archive), "missing_transcript", f"no transcript line for any utterance of {speaker}")
    keys = {it["key"] for it in out.items}
    for stem, path in loose.items():
        if stem not in keys:
            out.reject(str(path), "missing_transcript", f"{stem} has no transcript line", path.parent.parent.name)
    return out


def list_aishell3(root: str, opts: RecipeOptions) -> Listing:
    """``data_aishell3/{train,test}/content.txt`` (``SSB00050001.wav<TAB>广 guang3 州 zhou1 …``) and
    ``{train,test}/wav/<spk>/<utt>.wav`` (44.1 kHz)."""
    base = find_dir(root, "data_aishell3") or Path(root)
    if not any((base / s / "content.txt").is_file() for s in ("train", "test")):
        raise ValueError(f"{root}: no train/content.txt or test/content.txt (in it or in data_aishell3/); "
                         f"unpack data_aishell3.tgz here")
    out = Listing()
    for split in ("train", "test"):
        content = base / split / "content.txt"
        if not content.is_file():
            continue
        wavs = {p.stem: p for p in sorted((base / split / "wav").rglob("*.wav"))}
        lines, _ = read_lines(content)
        keys = set()
        for n, line in enumerate(lines, 1):
            src = f"{content}:{n}"
            if not line.strip():
                continue
            name, sep, text = line.partition("\t")
            if not sep:
                out.reject(src, "malformed_manifest", "no tab between file name and text", split)
                continue
            if has_surrogates(line):
                out.reject(src, "undecodable_text", "transcript line is not valid UTF-8", split)
                continue
            key = os.path.splitext(name.strip())[0]
            keys.add(key)
            speaker = key[:7]
            path = wavs.get(key, base / split / "wav" / speaker / f"{key}.wav")
            out.items.append(_item(key, text.strip(), src, audio_path=str(path), speaker=speaker, split=split))
        for stem, path in wavs.items():
            if stem not in keys:
                out.reject(str(path), "missing_transcript", f"{stem} has no line in {content.name}", split)
    return out


AISHELL1 = Recipe(
    name="aishell1", title="AISHELL-1 (Mandarin read speech)", datasets={"zh": "aishell1"},
    splits=("train", "dev", "test"), lister=list_aishell1, cleaner="join_cjk_words",
    download="https://www.openslr.org/33 (data_aishell.tgz)",
    expects="the folder data_aishell.tgz was unpacked into (data_aishell/transcript, data_aishell/wav/*.tar.gz); "
            "the per-speaker .tar.gz stay packed",
    cleans="word-segmentation spaces between Chinese characters removed")

AISHELL3 = Recipe(
    name="aishell3", title="AISHELL-3 (Mandarin multi-speaker)", datasets={"zh": "aishell3"},
    splits=("train", "test"), lister=list_aishell3, cleaner="strip_pinyin",
    download="https://www.openslr.org/93 (data_aishell3.tgz)",
    expects="the folder data_aishell3.tgz was unpacked into (data_aishell3/{train,test}/content.txt, wav/); "
            "it ships no dev split",
    cleans="the pinyin interleaved with the characters in content.txt (guang3, zhou1, ...) removed")
