"""Mesolitica Malaysian speech (Hugging Face ``mesolitica/Malaysian-*``): text-only Parquet files (columns
``transcription``, ``audio_filename``) and zips of MP3 segments, read in place.

The corpus names no speakers: for the speaker-disjoint split, a segment's "speaker" is the folder its audio
file is in (segments of one source recording share it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from ..archives import list_members
from ..importers import _item, _key_from_path
from . import Listing, Recipe, RecipeOptions
from ._common import has_surrogates

TEXT, AUDIO = "transcription", "audio_filename"


def list_items(root: str, opts: RecipeOptions) -> Listing:
    root_p = Path(root)
    parquets = sorted(root_p.rglob("*.parquet"))
    if not parquets:
        raise ValueError(f"{root}: no .parquet files; give the folder of the downloaded dataset repository")
    split_volumes = sorted(p for p in root_p.rglob("*.z[0-9][0-9]"))
    if split_volumes:
        raise ValueError(f"{root}: {split_volumes[0].name} is a volume of a split zip; join the volumes first "
                         f"(zip -s 0 NAME.zip --out NAME-joined.zip) and remove the .zNN files")
    by_path: dict[str, tuple[str, str]] = {}
    by_name: dict[str, tuple[str, str]] = {}
    for z in sorted(root_p.rglob("*.zip")):
        for m in list_members(str(z)):
            by_path.setdefault(m.name, (str(z), m.name))
            by_name.setdefault(os.path.basename(m.name), (str(z), m.name))
    out, used = Listing(), set()
    for parquet in parquets:
        table = pq.read_table(parquet)
        missing = [c for c in (TEXT, AUDIO) if c not in table.column_names]
        if missing:
            raise ValueError(f"{parquet}: column(s) {missing} not found; columns are {table.column_names}")
        for n, (text, audio) in enumerate(zip(table[TEXT].to_pylist(), table[AUDIO].to_pylist())):
            src = f"{parquet}#{n}"
            if not isinstance(audio, str) or not audio:
                out.reject(src, "malformed_manifest", f"no '{AUDIO}'")
                continue
            if not isinstance(text, str) or has_surrogates(text):
                out.reject(src, "malformed_manifest" if not isinstance(text, str) else "undecodable_text",
                           f"no '{TEXT}' string")
                continue
            found = by_path.get(audio) or by_name.get(os.path.basename(audio))
            if found is None:
                out.reject(src, "missing_audio", f"{audio} is in no .zip of the download")
                continue
            used.add(found)
            speaker = os.path.dirname(audio.replace("\\", "/")) or None
            out.items.append(_item(_key_from_path(audio), text, src, speaker=speaker, archive=found[0],
                                   member=found[1]))
    for member in sorted(set(by_path.values()) - used):
        out.reject(f"{member[0]}::{member[1]}", "missing_transcript", "no Parquet row names this audio")
    return out


RECIPE = Recipe(
    name="mesolitica", title="Mesolitica Malaysian speech (Malay; Whisper pseudo-labels)", datasets={"ms": "mesolitica"},
    splits=("train", "test"), lister=list_items, made_split_test=993,
    download="https://huggingface.co/mesolitica (the Malaysian Emilia speech set the paper cites: github.com/malaysia-ai/malaysian-dataset, text-to-speech/emilia)",
    expects="the folder of the dataset repository: *.parquet (transcription, audio_filename) and the *.zip of "
            "MP3 segments (kept zipped; split .z01 volumes joined first)",
    cleans="the 'transcription' column; nothing beyond the shared normaliser")
