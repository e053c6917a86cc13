"""Per-corpus transcript cleaning, applied before the shared normaliser (``text.normalize_text``).

Each rule is a named, pure function from the transcript as the publisher ships it to a transcript the shared
normaliser can take. The store keeps the publisher's text in ``raw_text`` and the cleaned, normalised text in
``text``; a partition's meta (in its ``_commit.json``) names the cleaner that was applied.
"""

from __future__ import annotations

import re

_PINYIN_RE = re.compile(r"^[a-zü:v]+[1-5]$", re.IGNORECASE)


def strip_pinyin(text: str) -> str:
    """AISHELL-3's content.txt interleaves each character with its pinyin (``广 guang3 州 zhou1``): drop every
    token that is Latin letters followed by a tone digit 1-5, keep the rest."""
    return " ".join(tok for tok in text.split() if not _PINYIN_RE.match(tok))


_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP_RE = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


def join_cjk_words(text: str) -> str:
    """AISHELL-1's transcript is word-segmented (``而 对 楼市 成交``): remove the spaces between Chinese
    characters (spaces next to Latin words stay)."""
    return _CJK_GAP_RE.sub("", text.strip())


# NSC transcription conventions (IMDA National Speech Corpus, transcription guidelines):
#   <FIL/> filler, <SPK/> speaker noise, <NON/> non-primary speaker, <STA/> stationary noise, <UNK> unclear word,
#   <S> short pause, <Z> ... tags of any kind: dropped.
#   (ppb) (ppc) (ppl) (ppo): paralinguistic sounds (breath, cough, laughter, other): dropped.
#   [ah] [lah] [leh] [meh] ...: discourse particles, which are spoken words of Singapore English: kept as words.
#   !wah!: an interjection marked with exclamation marks: kept as the word.
#   hel~: a word cut off by the speaker (a fragment): dropped.
#   #: marks around other-language or mispronounced words: the marks are dropped, the word kept.
_NSC_TAG_RE = re.compile(r"<[^<>]{0,40}>")
_NSC_PARALINGUISTIC_RE = re.compile(r"\(pp[a-z]\)", re.IGNORECASE)
_NSC_PARTICLE_RE = re.compile(r"\[([^\[\]]*)\]")
_NSC_INTERJECTION_RE = re.compile(r"!([^\s!]+)!")
_NSC_FRAGMENT_RE = re.compile(r"(?<!\S)\S*~(?!\S)")


def strip_nsc_markup(text: str) -> str:
    """Remove the NSC transcription markup (rules above); the words that were spoken stay."""
    text = _NSC_TAG_RE.sub(" ", text)
    text = _NSC_PARALINGUISTIC_RE.sub(" ", text)
    text = _NSC_PARTICLE_RE.sub(r" \1 ", text)
    text = _NSC_INTERJECTION_RE.sub(r"\1", text)
    text = _NSC_FRAGMENT_RE.sub(" ", text)
    text = text.replace("#", " ").replace("~", " ")
    return " ".join(text.split())


CLEANERS = {
    "strip_pinyin": strip_pinyin,
    "join_cjk_words": join_cjk_words,
    "strip_nsc_markup": strip_nsc_markup,
}


def clean_text(text: str, cleaner: str | None) -> str:
    """Apply the named cleaner (None: the text as it is)."""
    return CLEANERS[cleaner](text) if cleaner else text
