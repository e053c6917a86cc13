"""IMDA National Speech Corpus (Singapore English), as IMDA ships it.

Parts 1 and 2 (read speech): per-channel ``SCRIPT/<ch><spk4><session>.TXT`` files (UTF-8 with a BOM) holding,
per utterance, a line ``<id>\\t<text as read>`` and then a line ``\\t<normalised text>``; the audio in
``WAVE/SPEAKER<spk4>.zip`` (``SPEAKER<spk4>/SESSION<n>/<id>.WAV``), read in place. Only CHANNEL0 (the close
microphone) is imported: channels 1 and 2 are the same utterances recorded by other microphones.

Parts 3-6 (conversations): long recordings with Praat TextGrids (``Scripts */<name>.TextGrid`` beside
``Audio */<name>.wav``); every labelled interval becomes a segment of its recording.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..importers import _item
from ..textgrids import TextGridError, read_intervals
from . import Listing, Recipe, RecipeOptions
from ._common import has_surrogates, read_lines, zip_members_by_stem

_PART_RE = re.compile(r"^part\s*(\d+)$", re.IGNORECASE)
_ID_RE = re.compile(r"^\d{6,}$")


def find_parts(root: str) -> dict[int, Path]:
    """PART<n> folders anywhere in the top three levels of the download (Parts 4-6 come in a second folder)."""
    parts: dict[int, Path] = {}
    frontier = [Path(root)]
    for _ in range(3):
        nxt = []
        for d in frontier:
            for c in sorted(d.iterdir()):
                if c.is_dir():
                    m = _PART_RE.match(c.name)
                    if m:
                        parts.setdefault(int(m.group(1)), c)
                    else:
                        nxt.append(c)
        frontier = nxt
    return parts


def parse_script(lines: list[str]) -> list[tuple[str, str, str, int]]:
    """(utterance id, normalised text, text as read, line number) per utterance of a Part 1/2 script file.
    An utterance with no normalised line keeps the line as read (the cleaner removes its markup)."""
    out, current = [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line[:1] in ("\t", " ") and current is not None:
            uid, raw, ln = current
            out.append((uid, line.strip(), raw, ln))
            current = None
            continue
        if current is not None:
            out.append((current[0], current[1], current[1], current[2]))
        head, _, rest = line.partition("\t")
        current = (head.strip(), rest.strip(), n)
    if current is not None:
        out.append((current[0], current[1], current[1], current[2]))
    return out


def _list_read_part(part: int, folder: Path, out: Listing) -> None:
    channel = folder / "DATA" / "CHANNEL0"
    scripts = sorted((channel / "SCRIPT").glob("*.[Tt][Xx][Tt]")) if (channel / "SCRIPT").is_dir() else []
    zips = sorted((channel / "WAVE").glob("*.[Zz][Ii][Pp]")) if (channel / "WAVE").is_dir() else []
    members = zip_members_by_stem(zips)
    used: set[str] = set()
    for script in scripts:
        lines, _ = read_lines(script)
        for uid, text, raw, n in parse_script(lines):
            src = f"{script}:{n}"
            if not _ID_RE.match(uid):
                out.reject(src, "malformed_manifest", f"not an utterance id: {uid[:40]!r}")
                continue
            if has_surrogates(text):
                out.reject(src, "undecodable_text", "transcript is not valid UTF-8")
                continue
            speaker = f"part{part}-{uid[1:5]}"
            if uid not in members:
                out.reject(src, "missing_audio", f"{uid}.WAV is in no WAVE/SPEAKER{uid[1:5]}.zip")
                continue
            used.add(uid)
            archive, member = members[uid]
            out.items.append(_item(f"part{part}-{uid}", text, src, speaker=speaker, archive=archive, member=member))
    for stem, (archive, member) in sorted(members.items()):
        if stem not in used and member.lower().endswith(".wav"):
            out.reject(f"{archive}::{member}", "missing_transcript", f"{stem} has no line in any SCRIPT file")


def _list_conversation_part(part: int, folder: Path, out: Listing) -> None:
    audio: dict[str, Path] = {}
    for d in sorted(folder.iterdir(), key=lambda d: ("closemic" not in d.name.replace(" ", "").lower(), d.name)):
        if d.is_dir() and d.name.lower().startswith("audio"):
            for wav in sorted(d.rglob("*.[Ww][Aa][Vv]")):
                audio.setdefault(wav.stem, wav)
    grids = sorted(p for d in folder.iterdir() if d.is_dir() and not d.name.lower().startswith("audio")
                   for p in d.rglob("*.[Tt]ext[Gg]rid"))
    for grid in grids:
        try:
            intervals = read_intervals(grid)
        except TextGridError as e:
            out.reject(str(grid), "unreadable_textgrid", str(e))
            continue
        wav = audio.get(grid.stem)
        tiers = sorted({iv.tier for iv in intervals})
        for iv in intervals:
            src = f"{grid}#{iv.tier}@{iv.start:.3f}"
            if wav is None:
                out.reject(src, "missing_audio", f"no {grid.stem}.wav in the Audio folders of PART{part}")
                continue
            tier = f"-{tiers.index(iv.tier)}" if len(tiers) > 1 else ""
            key = f"part{part}-{grid.stem}{tier}-{int(round(iv.start * 1000)):09d}"
            out.items.append(_item(key, iv.label, src, audio_path=str(wav), speaker=f"part{part}-{grid.stem}{tier}",
                                   start_s=iv.start, end_s=iv.end))


def list_items(root: str, opts: RecipeOptions) -> Listing:
    parts = find_parts(root)
    if not parts:
        raise ValueError(f"{root}: no PART1 ... PART6 folder in the top three levels; give the folder holding "
                         f"'IMDA - National Speech Corpus' (and '... - Additional')")
    out = Listing()
    for part, folder in sorted(parts.items()):
        if (folder / "DATA").is_dir():
            _list_read_part(part, folder, out)
        else:
            _list_conversation_part(part, folder, out)
    for it in out.items:
        it["split"] = None  # made by prepare (speaker-disjoint)
    return out


RECIPE = Recipe(
    name="nsc", title="IMDA National Speech Corpus (Singapore English)", datasets={"en": "nsc"},
    splits=("train", "test"), lister=list_items, cleaner="strip_nsc_markup", made_split_test=3000,
    download="https://www.imda.gov.sg/how-we-can-help/national-speech-corpus (registration; Parts 1-6)",
    expects="the folder holding 'IMDA - National Speech Corpus/PART1..3' (and '... - Additional/PART4..6'); "
            "the per-speaker WAVE/SPEAKERnnnn.zip stay zipped; Parts 1-2 CHANNEL0 only",
    cleans="Part 1/2: the normalised line, not the line as read; NSC markup removed: <...> tags and "
           "(ppb)/(ppc)/(ppl)/(ppo) dropped, [lah]-style particles and !wah! interjections kept as words, "
           "fragments ending in ~ dropped, # marks removed")
