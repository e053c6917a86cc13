"""Praat TextGrids -> labelled intervals, through praatio's parser (UTF-8, UTF-8 with a BOM, or UTF-16)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from praatio.utilities import textgrid_io


@dataclass(frozen=True)
class Interval:
    tier: str
    start: float
    end: float
    label: str


class TextGridError(Exception):
    """A TextGrid that cannot be read or parsed."""


def decode_textgrid_bytes(data: bytes) -> str:
    """Praat writes UTF-16 (with a BOM) when a TextGrid holds non-ASCII text, UTF-8 otherwise; some tools add
    a UTF-8 BOM. praatio's own reader tries UTF-16 first, which turns a BOM-less UTF-8 file into noise."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-16")


def read_intervals(path: str | os.PathLike) -> list[Interval]:
    """Every non-empty interval of every interval tier, in tier order then time order."""
    try:
        with open(path, "rb") as f:
            text = decode_textgrid_bytes(f.read())
        parsed = textgrid_io.parseTextgridStr(text, includeEmptyIntervals=False)
        out = []
        for tier in parsed["tiers"]:
            if tier["class"] != "IntervalTier":
                continue
            for start, end, label in tier["entries"]:
                if label.strip():
                    out.append(Interval(tier["name"], float(start), float(end), label))
        return out
    except (OSError, UnicodeDecodeError, ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        raise TextGridError(f"{type(e).__name__}: {e}"[:200]) from None
    except Exception as e:  # praatio's own errors for malformed files
        raise TextGridError(f"{type(e).__name__}: {e}"[:200]) from None
