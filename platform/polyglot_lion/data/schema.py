"""The one utterance record, its Arrow schema, and the vocabularies every stage shares."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import pyarrow as pa

LANGUAGES: dict[str, str] = {"en": "English", "zh": "Chinese", "ta": "Tamil", "ms": "Malay"}
SPLITS: tuple[str, ...] = ("train", "dev", "test")
SAMPLE_RATE = 16_000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_language(value: str, what: str = "language") -> str:
    if value not in LANGUAGES:
        raise ValueError(f"{what} must be one of {sorted(LANGUAGES)} (is {value!r})")
    return value


def check_split(value: str, what: str = "split") -> str:
    if value not in SPLITS:
        raise ValueError(f"{what} must be one of {list(SPLITS)} (is {value!r})")
    return value


def check_dataset_name(value: str, what: str = "dataset") -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{what} must be 1-64 characters of letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (is {value!r})"
        )
    return value


UTTERANCE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("audio", pa.binary(), nullable=False),  # FLAC, 16 kHz, mono, PCM_16
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("text", pa.string(), nullable=False),  # normalised
        pa.field("raw_text", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=True),
        pa.field("source", pa.string(), nullable=False),  # where it came from (path, archive member, row)
    ]
)

# Columns that describe an utterance without its audio: cheap to read for stats and balancing.
META_COLUMNS = [f.name for f in UTTERANCE_SCHEMA if f.name != "audio"]


@dataclass(frozen=True)
class Utterance:
    """One utterance of the store. ``id`` is ``{dataset}/{split}/{key}``: unique and stable across re-imports."""

    id: str
    dataset: str
    language: str
    split: str
    audio: bytes
    duration_s: float
    text: str
    raw_text: str
    speaker: str | None
    source: str

    def __post_init__(self) -> None:
        check_language(self.language, f"Utterance {self.id}: language")
        check_split(self.split, f"Utterance {self.id}: split")
        if not self.duration_s > 0:
            raise ValueError(f"Utterance {self.id}: duration_s has to be greater than 0 (is {self.duration_s})")
        if not self.text:
            raise ValueError(f"Utterance {self.id}: text has to be non-empty after normalisation")

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> "Utterance":
        return cls(**{f.name: row[f.name] for f in UTTERANCE_SCHEMA})


def utterance_id(dataset: str, split: str, key: str) -> str:
    return f"{dataset}/{split}/{key}"
