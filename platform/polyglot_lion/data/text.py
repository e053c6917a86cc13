"""Transcript normalisation: the paper's convention (lowercase, punctuation removed), safe for all four scripts.

Rules, in order:
1. Unicode NFC (composes Tamil two-part vowel signs the same way whatever the source did).
2. Full-width forms (U+FF01..U+FF5E) become their ASCII twins; the ideographic space becomes a space.
3. Lowercase.
4. Every punctuation character (Unicode category P*) is deleted: "don't" -> "dont", "，" -> "".
5. Symbols (S*), control characters and other separators become spaces.
6. Whitespace collapses to single spaces; spaces between two CJK characters are removed.
Combining marks (Mn, Mc: Tamil vowel signs and virama) are letters' parts and are never touched.
"""

from __future__ import annotations

import re
import unicodedata

_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20

# Han ideographs (+ extensions, compatibility), CJK symbols are punctuation already; kana for completeness.
_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # extension A
    "\u4e00-\u9fff"  # unified ideographs
    "\uf900-\ufaff"  # compatibility ideographs
    "\U00020000-\U0002ebef"  # extensions B-F
)
_CJK_SPACE_RE = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SPACES_RE = re.compile(r"\s+")
_KEEP_ZERO_WIDTH = {"\u200c", "\u200d"}  # ZWNJ / ZWJ shape Indic text; keep them


def _char_map(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat[0] == "P":
        return ""
    if cat[0] == "S" or cat in ("Cc", "Zl", "Zp", "Zs"):
        return " "
    if cat == "Cf" and ch not in _KEEP_ZERO_WIDTH:
        return ""
    return ch


def normalize_text(text: str) -> str:
    """Normalise a transcript for training and scoring. Pure; returns '' for nothing left."""
    text = unicodedata.normalize("NFC", text).translate(_FULLWIDTH).lower()
    text = "".join(_char_map(ch) for ch in text)
    text = _SPACES_RE.sub(" ", text).strip()
    return _CJK_SPACE_RE.sub("", text)


_QWEN_PREFIX_RE = re.compile(r"^\s*language\s+[^<]*<asr_text>", re.IGNORECASE)


def strip_qwen_prefix(text: str) -> str:
    """Drop a Qwen3-ASR answer prefix (``language English<asr_text>``) from a manifest transcript."""
    return _QWEN_PREFIX_RE.sub("", text, count=1)
