"""Hostile inputs an outside prober sends, built in-process: decompression bombs, special files, odd archives.

Tests, the load benchmark (benchmarks/serve_load.py) and anyone checking a deployment share these.

    from polyglot_lion.testing.hostile import bomb_flac
    data = bomb_flac()              # ~430 KB of FLAC that declares 590 s x 192 kHz x 2 channels (~865 MiB float32)
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf


def bomb_flac(seconds: int = 590, rate: int = 192_000, channels: int = 2) -> bytes:
    """A FLAC of a constant signal: tiny encoded, huge decoded (``seconds * rate * channels * 4`` bytes as float32).
    The default is the probe's bomb: 192 kHz, 2 channels, 590 s; written one second at a time."""
    buf = io.BytesIO()
    block = np.full((rate, channels), 0.01, np.float32)
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(block)
    return buf.getvalue()


def header_bomb_wav(seconds: float = 0.1, rate: int = 16_000, channels: int = 64) -> bytes:
    """A short WAV with more channels than any decoder limit allows (a header-only refusal)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * rate), channels), np.float32) + 0.01, rate, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def make_fifo(path: str | os.PathLike) -> str:
    """A named pipe nobody writes to: reading it blocks forever, unless the reader refuses non-regular files."""
    os.mkfifo(path)
    return str(path)


def tar_with_links_and_duplicates(path: str | os.PathLike, members: dict[str, bytes],
                                  duplicate: tuple[str, bytes] | None = None) -> str:
    """A tar of ``members``, plus a symlink ``link.wav`` and a hard link ``hard.wav`` to the first member, plus
    (``duplicate``) a second member under an existing name with other bytes, after the others."""
    names = list(members)
    with tarfile.open(path, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        sym = tarfile.TarInfo("link.wav")
        sym.type, sym.linkname = tarfile.SYMTYPE, names[0]
        t.addfile(sym)
        hard = tarfile.TarInfo("hard.wav")
        hard.type, hard.linkname = tarfile.LNKTYPE, names[0]
        t.addfile(hard)
        if duplicate:
            info = tarfile.TarInfo(duplicate[0])
            info.size = len(duplicate[1])
            t.addfile(info, io.BytesIO(duplicate[1]))
    return str(Path(path))
