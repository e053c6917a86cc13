"""Small helpers the recipes share: reading publishers' text files, finding the corpus folder in a download."""

from __future__ import annotations

import os
from pathlib import Path

from ..archives import list_members
from ..importers import _has_surrogates as has_surrogates  # noqa: F401 - the recipes' name for it


def read_lines(path: str | os.PathLike) -> tuple[list[str], bool]:
    """A text file's lines (UTF-8, with or without a BOM; CRLF or LF) and whether it decoded cleanly. Bytes
    that are not UTF-8 come back as surrogates (see ``has_surrogates``), so one bad line rejects one record."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="surrogateescape")
    return text.splitlines(), not has_surrogates(text)


def find_dir(root: str | os.PathLike, relative: str, depth: int = 2) -> Path | None:
    """``root/relative``, or ``root/X/relative`` (up to ``depth`` folders down): a download may be unpacked
    into a folder of its own or not."""
    root = Path(root)
    frontier = [root]
    for _ in range(depth + 1):
        for d in frontier:
            if (d / relative).exists():
                return d / relative
        frontier = [c for d in frontier for c in sorted(d.iterdir()) if c.is_dir()]
    return None


def zip_members_by_stem(archives: list[Path]) -> dict[str, tuple[str, str]]:
    """{file stem: (archive, member)} over the audio members of zips (their central directories only)."""
    out: dict[str, tuple[str, str]] = {}
    for a in archives:
        for m in list_members(str(a)):
            stem = os.path.splitext(os.path.basename(m.name))[0]
            out.setdefault(stem, (str(a), m.name))
    return out
