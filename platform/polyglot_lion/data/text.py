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


# --- which script a transcript is written in (prepare's ``wrong_script``) ------------------------------------

# The script each language's transcripts are written in. Malay is Rumi (Latin); Jawi transcripts would need
# their own entry.
LANGUAGE_SCRIPTS = {"en": "latin", "ms": "latin", "zh": "han", "ta": "tamil"}
# Singapore speech code-switches: Mandarin and Tamil utterances carry English words, English ones carry
# Hokkien/Mandarin or Tamil words. Up to this share of a transcript's words may be in another script.
DEFAULT_FOREIGN_SCRIPT_SHARE = 0.5


def _script_of(ch: str) -> str | None:
    """'latin', 'han', 'tamil', 'other' for a letter or combining mark, None for anything else (digits, spaces)."""
    cp = ord(ch)
    if 0x0B80 <= cp <= 0x0BFF:
        return "tamil"
    if (0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2EBEF
            or 0x3040 <= cp <= 0x30FF):
        return "han"
    cat = unicodedata.category(ch)
    if cat[0] not in "LM":
        return None
    if cp < 0x0250 or 0x1E00 <= cp <= 0x1EFF or 0xFF21 <= cp <= 0xFF5A:  # Latin, its extensions, full-width
        return "latin"
    return "other"


def script_words(text: str) -> list[str]:
    """The script of each word of ``text``, in order: a Han character is a word of its own (one syllable, as a
    Latin or Tamil word is a run of letters); digits, punctuation and spaces separate words and count for none.
    A Tamil combining mark continues its word. Pure."""
    out: list[str] = []
    prev: str | None = None
    for ch in text:
        s = _script_of(ch)
        if s is None:
            prev = None
            continue
        if s == "han" or s != prev:
            out.append(s)
        prev = s
    return out


def script_share(text: str, language: str) -> float:
    """The share (0..1) of ``text``'s words that are NOT in ``language``'s script (LANGUAGE_SCRIPTS); 0.0 for a
    text without letters. Raises ValueError for a language it does not know."""
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(f"language {language!r} has no known script; known: {sorted(LANGUAGE_SCRIPTS)}")
    words = script_words(text)
    if not words:
        return 0.0
    expected = LANGUAGE_SCRIPTS[language]
    return sum(w != expected for w in words) / len(words)


def fits_script(text: str, language: str, tolerance: float = DEFAULT_FOREIGN_SCRIPT_SHARE) -> bool:
    """True when at most ``tolerance`` of the words are in another script than the language's (code-switching
    within that share is accepted); prepare rejects the rest as ``wrong_script``. Pure."""
    if not 0.0 <= tolerance <= 1.0:
        raise ValueError(f"tolerance must be in [0, 1] (is {tolerance})")
    return script_share(text, language) <= tolerance
