"""The sharded store: Parquet shards of utterances, one partition per split/language/dataset, on a local disk or in
a bucket (``STORE`` is any location ``storage.resolve`` takes: a path, ``s3://bucket/prefix``, ``gs://...``).

    STORE/data/{split}/{language}/{dataset}/_commit.json                   which generation the partition is
    STORE/data/{split}/{language}/{dataset}/gen-{id}/part-{uuid}.parquet   its utterances (UTTERANCE_SCHEMA)
    STORE/data/{split}/{language}/{dataset}/gen-{id}/_rejects.jsonl        one line per rejected record, with reason

Object stores have no rename, so a partition is published by a commit, the one file written last and whole:
``_commit.json`` holds the generation, its shard files (relative to the partition folder), its rejects file and the
meta (counts, hours, rejects by reason, input). Readers take only the shards a commit lists. An import writes a new
generation beside the committed one and then replaces the commit, a single whole-object write: readers see the old
partition or the new one, never a mix. Older generations are deleted after the switch, best effort. An import that
fails or is killed leaves at most an uncommitted generation, which no reader lists and the next import of that
partition deletes. One code path for both kinds of location: no rename anywhere.

A store written before generations (``_meta.json`` and ``part-*.parquet`` directly in the partition folder, no
``_commit.json``) is read as it is; re-importing a partition moves it to this layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..storage import Location, resolve
from .schema import META_COLUMNS, UTTERANCE_SCHEMA

COMMIT_FILE = "_commit.json"
META_FILE = "_meta.json"  # a partition written before generations: its meta (no commit file)
REJECTS_FILE = "_rejects.jsonl"
GENERATION_PREFIX = "gen-"


@dataclass(frozen=True)
class Partition:
    """One committed partition: its folder and the shards of its committed generation."""

    split: str
    language: str
    dataset: str
    location: Location  # the partition folder
    files: list[str]  # the committed shards, as paths inside ``fs`` (absolute paths on a local disk)
    generation: str | None = None  # None: a partition written before generations
    commit: dict | None = field(default=None, repr=False)

    @property
    def fs(self) -> pafs.FileSystem:
        """The filesystem of ``files``: pass it to readers (``pq.read_table(f, filesystem=p.fs)``,
        ``ray.data.read_parquet(p.files, filesystem=p.fs)``)."""
        return self.location.fs

    @property
    def meta(self) -> dict:
        if self.commit is not None:
            return self.commit["meta"]
        return json.loads(self.location.join(META_FILE).read_text())

    def shards(self) -> list[Location]:
        return [Location(self.fs, f, self.location.scheme) for f in self.files]

    def rejects(self) -> list[dict]:
        loc = self.location.join(self.commit["rejects"] if self.commit is not None else REJECTS_FILE)
        if not loc.exists():
            return []
        return [json.loads(line) for line in loc.read_text().splitlines() if line]


def partition_location(store: str | os.PathLike | Location, split: str, language: str, dataset: str) -> Location:
    return resolve(store).join("data", split, language, dataset)


def list_partitions(store: str | os.PathLike | Location, split: str | None = None) -> list[Partition]:
    """Committed partitions of the store (and those written before generations), sorted by split, language,
    dataset. One listing of the store's files, then each commit read (a few in parallel: one request each in a
    bucket)."""
    root = resolve(store).join("data")
    if not root.is_dir():
        raise FileNotFoundError(f"store {resolve(store)}: no 'data' folder; run 'polyglot-lion prepare' first")
    folders: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    for loc, _ in (root.join(split) if split else root).file_infos(recursive=True):
        rel = loc.path[len(root.path) + 1:].split("/")
        if len(rel) == 4:  # split/language/dataset/NAME: a commit, or a partition written before generations
            folders.setdefault(tuple(rel[:3]), {}).setdefault("top", []).append(rel[3])
    committed = [k for k, v in folders.items() if COMMIT_FILE in v["top"]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        commits = dict(zip(committed, pool.map(lambda k: json.loads(root.join(*k, COMMIT_FILE).read_text()),
                                               committed)))
    parts: dict[tuple[str, str], Partition] = {}  # (split, dataset) -> its newest partition
    for key in sorted(folders):
        s, lang, ds = key
        folder = root.join(s, lang, ds)
        if key in commits:
            c = commits[key]
            part = Partition(s, lang, ds, folder, [folder.join(f).path for f in c["files"]], c["generation"], c)
        elif META_FILE in folders[key]["top"]:
            part = Partition(s, lang, ds, folder,
                             sorted(folder.join(n).path for n in folders[key]["top"] if n.endswith(".parquet")))
        else:  # an import in progress, or one killed before its first commit
            continue
        # the same dataset/split under two languages: an import moved it and was stopped before it deleted the
        # old one; the newer generation is the partition (so the switch is one write here too)
        seen = parts.get((s, ds))
        if seen is None or (part.generation or "") > (seen.generation or ""):
            parts[(s, ds)] = part
    return sorted(parts.values(), key=lambda p: (p.split, p.language, p.dataset))


def read_metadata(store: str | os.PathLike | Location, split: str | None = None,
                  columns: list[str] | None = None) -> pa.Table:
    """Every utterance's non-audio columns (or ``columns``) as one Arrow table; cheap, the audio is not read."""
    cols = columns or META_COLUMNS
    parts = list_partitions(store, split)
    files = [f for p in parts for f in p.files]
    if not files:
        return UTTERANCE_SCHEMA.empty_table().select(cols)
    # one multi-file read: its requests overlap, which matters in a bucket
    return pq.read_table(files, columns=cols, filesystem=parts[0].fs, schema=UTTERANCE_SCHEMA)


def store_fingerprint(store: str | os.PathLike | Location, split: str | None = None) -> str:
    """A content hash of the store's partitions (their split/language/dataset and meta): another store, or this one
    re-imported differently, has another fingerprint. Cheap: no shard is read."""
    h = hashlib.sha256()
    for p in list_partitions(store, split):
        h.update(f"{p.split}/{p.language}/{p.dataset}\n".encode())
        h.update(json.dumps(p.meta, indent=2, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def store_files(store: str | os.PathLike | Location, split: str | None = None) -> list[str]:
    """The committed shards, as paths inside ``store_filesystem(store)``."""
    return [f for p in list_partitions(store, split) for f in p.files]


def store_filesystem(store: str | os.PathLike | Location) -> pafs.FileSystem:
    return resolve(store).fs


# --- writing: a new generation, then the commit ------------------------------------------------------------------

def new_generation(store: str | os.PathLike | Location, split: str, language: str, dataset: str) -> Location:
    """The folder an import writes a partition's new generation into (nothing is created yet). Generation names
    sort by the time they were started."""
    name = f"{GENERATION_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    return partition_location(store, split, language, dataset).join(name)


def write_shard(loc: Location, table: pa.Table, **parquet_args) -> None:
    """A Parquet file written whole (one object in a bucket; a temporary file renamed on a local disk)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **parquet_args)
    loc.write_bytes(buf.getvalue())


def publish_partition(store: str | os.PathLike | Location, generation: Location, split: str, language: str,
                      dataset: str, files: list[str], meta: dict) -> Partition:
    """Commit ``generation`` (its shard ``files``, names inside it; its rejects file) as the partition: the commit file
    is written last, whole. Then, best effort: the dataset/split imported earlier under another language and the older
    generations are deleted."""
    folder = partition_location(store, split, language, dataset)
    assert generation.parent.path == folder.path, (generation, folder)
    commit = {"generation": generation.name, "files": [f"{generation.name}/{n}" for n in sorted(files)],
              "rejects": f"{generation.name}/{REJECTS_FILE}", "meta": meta}
    folder.join(COMMIT_FILE).write_text(json.dumps(commit, indent=2, ensure_ascii=False))
    try:
        for other in resolve(store).join("data", split).list():  # one listing per language: a request each
            moved = next((d for d in other.list() if d.name == dataset), None) if other.name != language else None
            if moved is not None:
                moved.join(COMMIT_FILE).delete()  # first, so that it is never a commit without its shards
                moved.delete()
        prune_generations(folder, keep=generation.name)
    except OSError:
        pass  # only space is lost: readers take the commit, and the next import of the partition prunes again
    return Partition(split, language, dataset, folder, [folder.join(f).path for f in commit["files"]],
                     generation.name, commit)


def prune_generations(folder: Location, keep: str) -> None:
    """Delete a partition's generations older than ``keep`` (committed before, or imports that failed) and the files
    of the layout before generations. Newer ones are left alone: an import still running may be writing them."""
    for entry in folder.list():
        if entry.name == COMMIT_FILE or entry.name == keep:
            continue
        if entry.name.startswith(GENERATION_PREFIX) and entry.name > keep:
            continue
        entry.delete()
