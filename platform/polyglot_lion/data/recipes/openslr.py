"""The two OpenSLR Tamil corpora: SLR65 (crowdsourced, Google) and SLR127 (IISc-MILE)."""

from __future__ import annotations

from pathlib import Path

from ..importers import _item
from . import Listing, Recipe, RecipeOptions
from ._common import find_dir, has_surrogates, read_lines, zip_members_by_stem


def list_slr65(root: str, opts: RecipeOptions) -> Listing:
    """``line_index_{female,male}.tsv`` (``<file id>\\t<text>``) and ``ta_in_{female,male}.zip`` (WAVs), read in
    place (or unzipped: WAVs anywhere below the folder); the speaker is the file id's first two fields
    (``taf_02345``)."""
    indexes = sorted(Path(root).glob("line_index*.tsv"))
    if not indexes:
        raise ValueError(f"{root}: no line_index_female.tsv / line_index_male.tsv; give the folder holding "
                         f"the SLR65 downloads (the ta_in_*.zip stay zipped)")
    members = zip_members_by_stem(sorted(Path(root).glob("*.zip")))
    loose = {p.stem: p for p in sorted(Path(root).rglob("*.wav"))}
    out, used = Listing(), set()
    for index in indexes:
        lines, _ = read_lines(index)
        for n, line in enumerate(lines, 1):
            src = f"{index}:{n}"
            if not line.strip():
                continue
            key, sep, text = line.partition("\t")
            key = key.strip()
            if not sep:
                out.reject(src, "malformed_manifest", "no tab between file id and text")
                continue
            if has_surrogates(line):
                out.reject(src, "undecodable_text", "transcript line is not valid UTF-8")
                continue
            speaker = "_".join(key.split("_")[:2])
            used.add(key)
            if key in members:
                archive, member = members[key]
                out.items.append(_item(key, text.strip(), src, speaker=speaker, archive=archive, member=member))
            elif key in loose:
                out.items.append(_item(key, text.strip(), src, audio_path=str(loose[key]), speaker=speaker))
            else:
                out.reject(src, "missing_audio", f"{key}.wav is in no *.zip beside the index")
    for stem, (archive, member) in sorted(members.items()):
        if stem not in used and member.lower().endswith(".wav"):
            out.reject(f"{archive}::{member}", "missing_transcript", f"{stem} has no line in a line_index file")
    for stem, path in loose.items():
        if stem not in used and stem not in members:
            out.reject(str(path), "missing_transcript", f"{stem} has no line in a line_index file")
    return out


def list_slr127(root: str, opts: RecipeOptions) -> Listing:
    """``{train,test}/audio_files/<stem>.wav`` with one transcript per clip in ``{train,test}/trans_files/<stem>.txt``."""
    out = Listing()
    found = False
    for split in ("train", "test"):
        folder = find_dir(root, split)
        if folder is None or not (folder / "audio_files").is_dir():
            continue
        found = True
        wavs = {p.stem: p for p in sorted((folder / "audio_files").glob("*.wav"))}
        texts = {p.stem: p for p in sorted((folder / "trans_files").glob("*.txt"))} if (folder / "trans_files").is_dir() else {}
        for stem, path in wavs.items():
            if stem not in texts:
                out.reject(str(path), "missing_transcript", f"no trans_files/{stem}.txt", split)
                continue
            lines, ok = read_lines(texts[stem])
            if not ok:
                out.reject(str(texts[stem]), "undecodable_text", "transcript is not valid UTF-8", split)
                continue
            out.items.append(_item(stem, " ".join(x.strip() for x in lines), str(texts[stem]),
                                   audio_path=str(path), split=split))
        for stem, path in texts.items():
            if stem not in wavs:
                out.reject(str(path), "missing_audio", f"no audio_files/{stem}.wav", split)
    if not found:
        raise ValueError(f"{root}: no train/audio_files or test/audio_files (in it or up to two folders down); "
                         f"unpack the SLR127 archives here")
    return out


SLR65 = Recipe(
    name="slr65", title="SLR65: crowdsourced high-quality Tamil", datasets={"ta": "slr65"},
    splits=("train", "test"), lister=list_slr65, made_split_test=429,
    download="https://www.openslr.org/65 (ta_in_female.zip, ta_in_male.zip, line_index_*.tsv)",
    expects="the folder holding line_index_{female,male}.tsv and ta_in_{female,male}.zip (kept zipped)",
    cleans="nothing beyond the shared normaliser")

SLR127 = Recipe(
    name="slr127", title="SLR127: IISc-MILE Tamil ASR corpus", datasets={"ta": "slr127"},
    splits=("train", "test"), lister=list_slr127,
    download="https://www.openslr.org/127",
    expects="the folder the archives were unpacked into ({train,test}/audio_files, {train,test}/trans_files)",
    cleans="one transcript file per clip, its lines joined; nothing else beyond the shared normaliser")
