"""The sharded store: Parquet shards of utterances, one folder per split/language/dataset.

    STORE/data/{split}/{language}/{dataset}/part-00000.parquet ...   the utterances (UTTERANCE_SCHEMA)
    STORE/data/{split}/{language}/{dataset}/_meta.json               counts, hours, rejects by reason, input
    STORE/data/{split}/{language}/{dataset}/_rejects.jsonl           one line per rejected record, with reason

A partition becomes visible only once complete: it is built in STORE/.staging and moved into place, so a
failed import leaves the previous partition (or nothing) rather than half a partition. Files whose names
start with '_' or '.' are skipped by pyarrow and Ray Data readers.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import META_COLUMNS, UTTERANCE_SCHEMA

META_FILE = "_meta.json"
REJECTS_FILE = "_rejects.jsonl"


@dataclass(frozen=True)
class Partition:
    split: str
    language: str
    dataset: str
    path: Path

    @property
    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob("*.parquet"))

    @property
    def meta(self) -> dict:
        return json.loads((self.path / META_FILE).read_text())

    def rejects(self) -> list[dict]:
        p = self.path / REJECTS_FILE
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def partition_dir(store: str | os.PathLike, split: str, language: str, dataset: str) -> Path:
    return Path(store) / "data" / split / language / dataset


def list_partitions(store: str | os.PathLike, split: str | None = None) -> list[Partition]:
    """Complete partitions of the store (those with a _meta.json), sorted by split, language, dataset."""
    root = Path(store) / "data"
    if not root.is_dir():
        raise FileNotFoundError(f"store {store}: no 'data' folder; run 'polyglot-lion prepare' first")
    parts = []
    for meta in sorted(root.glob(f"{split or '*'}/*/*/{META_FILE}")):
        d = meta.parent
        parts.append(Partition(d.parent.parent.name, d.parent.name, d.name, d))
    return parts


def read_metadata(store: str | os.PathLike, split: str | None = None,
                  columns: list[str] | None = None) -> pa.Table:
    """Every utterance's non-audio columns (or ``columns``) as one Arrow table; cheap, the audio is not read."""
    cols = columns or META_COLUMNS
    tables = [pq.read_table(f, columns=cols) for p in list_partitions(store, split) for f in p.files]
    if not tables:
        return UTTERANCE_SCHEMA.empty_table().select(cols)
    return pa.concat_tables(tables)


def store_fingerprint(store: str | os.PathLike, split: str | None = None) -> str:
    """A content hash of the store's partitions (their split/language/dataset and _meta.json): another store, or
    this one re-imported differently, has another fingerprint. Cheap: no shard is read."""
    import hashlib

    h = hashlib.sha256()
    for p in list_partitions(store, split):
        h.update(f"{p.split}/{p.language}/{p.dataset}\n".encode())
        h.update((p.path / META_FILE).read_bytes())
    return h.hexdigest()[:16]


def store_files(store: str | os.PathLike, split: str | None = None) -> list[str]:
    return [f for p in list_partitions(store, split) for f in p.files]


def new_staging_dir(store: str | os.PathLike) -> Path:
    d = Path(store) / ".staging" / uuid.uuid4().hex
    d.mkdir(parents=True)
    return d


def publish_partition(store: str | os.PathLike, built: Path, split: str, language: str, dataset: str) -> Path:
    """Move a fully built partition folder into place, replacing the dataset/split under any language."""
    target = partition_dir(store, split, language, dataset)
    trash = Path(store) / ".trash" / uuid.uuid4().hex
    old = [target]
    if (Path(store) / "data").is_dir():  # the same dataset/split imported earlier under another language
        old += [p.path for p in list_partitions(store, split) if p.dataset == dataset and p.language != language]
    for i, o in enumerate(old):
        if o.exists():
            trash.mkdir(parents=True, exist_ok=True)
            os.replace(o, trash / str(i))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(built, target)
    shutil.rmtree(trash, ignore_errors=True)
    return target


def cleanup(store: str | os.PathLike) -> None:
    for name in (".staging", ".trash"):
        d = Path(store) / name
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
