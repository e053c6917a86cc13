"""LibriSpeech (openslr.org/12): ``LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt`` + FLAC."""

from __future__ import annotations

from pathlib import Path

from ..importers import list_librispeech
from . import Listing, Recipe, RecipeOptions
from ._common import find_dir

# The paper trains on train-clean-100 and tests on test-clean; *-other sets are not imported.
SUBSETS = {"train-clean-100": "train", "train-clean-360": "train", "train-other-500": "train",
           "dev-clean": "dev", "test-clean": "test"}


def list_items(root: str, opts: RecipeOptions) -> Listing:
    base = find_dir(root, "LibriSpeech") or Path(root)
    found = [base / s for s in SUBSETS if (base / s).is_dir()]
    if not found:
        raise ValueError(f"{root}: no LibriSpeech subset folder ({', '.join(SUBSETS)}) in it or in "
                         f"LibriSpeech/ below it; unpack the subsets' .tar.gz files here")
    out = Listing()
    for folder in found:
        split = SUBSETS[folder.name]
        items, rejects = list_librispeech(str(folder))
        for it in items:
            it["split"] = split
        out.items += items
        for r in rejects:
            out.reject(r["source"], r["reason"], r["detail"], split)
        listed = {it["key"] for it in items}
        for flac in sorted(folder.glob("*/*/*.flac")):
            if flac.stem not in listed:
                out.reject(str(flac), "missing_transcript", f"{flac.stem} has no line in a .trans.txt", split)
    return out


RECIPE = Recipe(
    name="librispeech", title="LibriSpeech (read English audiobooks)", datasets={"en": "librispeech"},
    splits=("train", "dev", "test"), lister=list_items,
    download="https://www.openslr.org/12 (train-clean-100.tar.gz, dev-clean.tar.gz, test-clean.tar.gz)",
    expects="the folder the subsets' .tar.gz were unpacked into (holding LibriSpeech/<subset>/); "
            "train-clean-100/-360/-other-500 -> train, dev-clean -> dev, test-clean -> test",
    cleans="nothing beyond the shared normaliser (upper case is lowered there)")
