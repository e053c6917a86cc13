"""FLEURS (zh, ta, ms) from the ``google/fleurs`` dataset repository: ``data/<lang>/{train,dev,test}.tsv``
(no header row) and ``data/<lang>/audio/<split>.tar.gz``, read in place.

One FLORES prompt is read by several speakers, so the TSV's first column (the prompt id) is not unique: the
utterance key is the audio file's name, and every reading is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..importers import _item
from . import Listing, Recipe, RecipeOptions
from ._common import has_surrogates, read_lines

LANG_CODES = {"zh": "cmn_hans_cn", "ta": "ta_in", "ms": "ms_my"}
# The TSV's columns, in order (the files have no header row).
COLUMNS = ("id", "file_name", "raw_transcription", "transcription", "characters", "num_samples", "gender")


def lang_dir(root: str, language: str) -> Path:
    code = LANG_CODES[language]
    for c in (Path(root), Path(root) / code, Path(root) / "data" / code):
        if c.name == code and c.is_dir():
            return c
    raise ValueError(f"{root}: no FLEURS folder '{code}' (looked for {root}/data/{code} and {root}/{code}); "
                     f"give the google/fleurs repository folder")


def list_items(root: str, opts: RecipeOptions) -> Listing:
    folder = lang_dir(root, opts.language)
    out = Listing()
    for split in ("train", "dev", "test"):
        tsv = folder / f"{split}.tsv"
        if not tsv.is_file():
            continue
        archive = folder / "audio" / f"{split}.tar.gz"
        unpacked = folder / "audio" / split
        if not archive.is_file() and not unpacked.is_dir():
            raise ValueError(f"{folder}: {split}.tsv has no audio/{split}.tar.gz (or unpacked audio/{split}/)")
        lines, _ = read_lines(tsv)
        listed: set[str] = set()
        for n, line in enumerate(lines, 1):
            src = f"{tsv}:{n}"
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(COLUMNS):
                out.reject(src, "malformed_manifest", f"{len(fields)} fields, expected {len(COLUMNS)}", split)
                continue
            row = dict(zip(COLUMNS, fields))
            if has_surrogates(row["transcription"]):
                out.reject(src, "undecodable_text", "transcript is not valid UTF-8", split)
                continue
            key = os.path.splitext(row["file_name"])[0]
            listed.add(key)
            if unpacked.is_dir() and not archive.is_file():
                out.items.append(_item(key, row["transcription"], src, audio_path=str(unpacked / row["file_name"]),
                                       split=split))
            else:  # the member is found by its file name while the task reads the archive
                out.items.append(_item(key, row["transcription"], src, archive=str(archive), split=split))
        if unpacked.is_dir() and not archive.is_file():  # (in the archive, the reading task finds these)
            for wav in sorted(unpacked.glob("*.wav")):
                if wav.stem not in listed:
                    out.reject(str(wav), "missing_transcript", f"{wav.name} has no row in {tsv.name}", split)
    return out


RECIPE = Recipe(
    name="fleurs", title="FLEURS (Mandarin, Tamil, Malay read speech)",
    datasets={"zh": "fleurs-zh", "ta": "fleurs-ta", "ms": "fleurs-ms"}, splits=("train", "dev", "test"),
    lister=list_items,
    download="https://huggingface.co/datasets/google/fleurs (data/cmn_hans_cn, data/ta_in, data/ms_my)",
    expects="the google/fleurs repository folder (data/<code>/<split>.tsv, data/<code>/audio/<split>.tar.gz "
            "kept packed); --language zh, ta or ms",
    cleans="the 'transcription' column (already lower-cased by FLEURS); every reading of a prompt kept")
