"""Mozilla Common Voice 23 (zh-CN, ta): ``cv-corpus-23.0-<date>/<locale>/{train,dev,test}.tsv`` + ``clips/*.mp3``."""

from __future__ import annotations

from pathlib import Path

from ..importers import FormatOptions, list_csv
from . import Listing, Recipe, RecipeOptions

LOCALES = {"zh": "zh-CN", "ta": "ta"}


def locale_dir(root: str, language: str) -> Path:
    locale = LOCALES[language]
    candidates = [Path(root)] if Path(root).name == locale else []
    candidates += [Path(root) / locale] + sorted(Path(root).glob(f"cv-corpus-*/{locale}"))
    for c in candidates:
        if (c / "train.tsv").is_file() or (c / "test.tsv").is_file():
            return c
    raise ValueError(f"{root}: no Common Voice '{locale}' folder with train/dev/test.tsv (looked in {root}, "
                     f"{root}/{locale} and {root}/cv-corpus-*/{locale}); unpack the cv-corpus archive here")


def list_items(root: str, opts: RecipeOptions) -> Listing:
    folder = locale_dir(root, opts.language)
    out = Listing()
    for split in ("train", "dev", "test"):
        tsv = folder / f"{split}.tsv"
        if not tsv.is_file():
            continue
        items, rejects = list_csv(str(tsv), FormatOptions(clips_dir=str(folder / "clips")))
        for it in items:
            it["split"] = split
        out.items += items
        for r in rejects:
            out.reject(r["source"], r["reason"], r["detail"], split)
    return out


RECIPE = Recipe(
    name="commonvoice", title="Mozilla Common Voice 23 (Mandarin zh-CN, Tamil)", datasets={"zh": "cv-zh", "ta": "cv-ta"},
    splits=("train", "dev", "test"), lister=list_items,
    download="https://commonvoice.mozilla.org/datasets (Common Voice Corpus 23.0, zh-CN and ta)",
    expects="the folder the cv-corpus-23.0-*.tar.gz was unpacked into (cv-corpus-*/<locale>/train.tsv, clips/); "
            "--language zh or ta",
    cleans="the 'sentence' column; nothing beyond the shared normaliser")
