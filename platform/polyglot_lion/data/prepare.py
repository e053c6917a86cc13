"""Import corpora into the store with Ray Data: list -> decode/resample/encode/normalise -> Parquet shards.

    polyglot-lion prepare --recipe nsc --input downloads/nsc --store store/          # a corpus as published
    polyglot-lion prepare --format jsonl --input corpus/nsc/train.jsonl --dataset nsc --language en \
        --split train --store store/                                                # one manifest

Bad records never stop the job: every record ends up either as an utterance of its partition or as a line
of that partition's _rejects.jsonl with its reason (see audio.REJECT_REASONS). Several imports can run in
one pipeline (``prepare(specs=[...])``, or ``polyglot-lion prepare --specs FILE``).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from ..storage import Location, resolve
from .archives import MemberError, archive_kind, iter_members
from .audio import AudioRejected, decode_audio, encode_flac
from .cleaners import clean_text
from .importers import AUDIO_EXTENSIONS, FORMATS, LISTERS, SOURCE_SCHEMA, FormatOptions, parquet_rows_to_items
from .recipes import RecipeOptions, get_recipe
from .schema import SPLITS, UTTERANCE_SCHEMA, check_dataset_name, check_language, check_split, utterance_id
from .splits import speaker_disjoint_split
from .store import REJECTS_FILE, new_generation, publish_partition, write_shard
from .text import DEFAULT_FOREIGN_SCRIPT_SHARE, fits_script, normalize_text, script_share

MAX_HELPERS = 4  # chunks one import task has in helper tasks at a time (see import_block)
_SPEC = "_spec"  # the target partition of an item (-1: decided in the task from the archive member's folder)
_GROUP = "_group"  # the import spec an item came from
# What each Ray task returns to the driver: one small row per written shard (with its rows' ids, sources and
# durations, so that committing reads no shard back: in a bucket that is a request per column) or per rejected
# record.
REPORT_SCHEMA = pa.schema([("spec", pa.int32()), ("kind", pa.string()), ("shard", pa.string()),
                           ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                           ("ids", pa.list_(pa.string())), ("sources", pa.list_(pa.string())),
                           ("durations", pa.list_(pa.float64()))])
# FLAC is already compressed: compressing it again costs 0.2 ms a clip for nothing (measured, snappy).
PARQUET_WRITE_ARGS = {
    "compression": {name: ("none" if name == "audio" else "zstd") for name in UTTERANCE_SCHEMA.names},
}
# A shard holds at most this much audio, so that it goes to a bucket in one PUT: pyarrow's S3 writer turns a file
# above 10 MiB into a multipart upload (three requests or more, and the parts copied again by the server; measured
# on moto: 11.5 MB took 135 ms, 9 MB 64 ms). A batch of long clips is written as two or more shards.
SHARD_MAX_AUDIO_BYTES = 8 * 2**20
_SOURCE_WITH_SPEC = SOURCE_SCHEMA.append(pa.field(_SPEC, pa.int32())).append(pa.field(_GROUP, pa.int32()))
# read_sources' output: the items with archive members' bytes read, and why an item could not be read.
_READ_SCHEMA = _SOURCE_WITH_SPEC.append(pa.field("_reason", pa.string())).append(pa.field("_detail", pa.string()))


@dataclass(frozen=True)
class ImportSpec:
    """One import: a corpus split in a generic ``format`` (one partition), or a whole corpus by ``recipe``
    (every split it ships, dataset name from the recipe)."""

    format: str = ""
    input: str = ""
    dataset: str = ""
    language: str = ""
    split: str = ""
    options: FormatOptions = field(default_factory=FormatOptions)
    recipe: str | None = None
    test_utterances: int | None = None  # recipes without an official split: size of the made test split
    seed: int = 0  # ... and its seed

    def problems(self) -> list[str]:
        out = []
        if not os.path.exists(self.input):
            out.append(f"input {self.input!r} does not exist")
        if self.recipe is not None:
            try:
                recipe = get_recipe(self.recipe)
                recipe.dataset_for(self.language or None)
            except ValueError as e:
                return out + [str(e)]
            given = [k for k in ("format", "dataset", "split") if getattr(self, k)]
            if given:
                out.append(f"recipe {self.recipe}: {', '.join(given)} come(s) from the recipe; do not give them")
            if self.test_utterances is not None:
                if not recipe.made_split_test:
                    out.append(f"recipe {self.recipe}: test_utterances is only for corpora with no official "
                               f"split (this one ships {list(recipe.splits)})")
                elif self.test_utterances < 1:
                    out.append(f"test_utterances must be at least 1 (is {self.test_utterances})")
            return out
        if self.format not in FORMATS:
            out.append(f"format must be one of {list(FORMATS)} (is {self.format!r})")
        for check, value in ((check_dataset_name, self.dataset), (check_language, self.language),
                             (check_split, self.split)):
            try:
                check(value)
            except ValueError as e:
                out.append(str(e))
        return out

    def targets(self) -> list[tuple[str, str, str]]:
        """(dataset, language, split) of every partition this import writes."""
        if self.recipe is None:
            return [(self.dataset, self.language, self.split)]
        r = get_recipe(self.recipe)
        lang = r.language_for(self.language or None)
        return [(r.dataset_for(self.language or None), lang, split) for split in r.splits]

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | None = None) -> "ImportSpec":
        """From a --specs entry; a relative ``input`` is taken relative to ``base_dir`` when given."""
        d = dict(d)
        opts = {k: d.pop(k) for k in list(d) if k in FormatOptions.__dataclass_fields__}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"import spec: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{sorted(set(cls.__dataclass_fields__) - {'options'}) + sorted(FormatOptions.__dataclass_fields__)}")
        if base_dir and isinstance(d.get("input"), str) and not os.path.isabs(os.path.expanduser(d["input"])):
            d["input"] = os.path.join(base_dir, d["input"])
        return cls(options=FormatOptions(**opts), **d)


def load_specs(path: str, root: str | None = None) -> list[ImportSpec]:
    """Imports from a --specs file: JSON or YAML, a list of imports or ``{root: DIR, imports: [...]}``.
    Relative inputs are taken relative to ``root`` (this argument, else the file's ``root``, itself relative to
    the file's folder), else to the file's folder."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)  # JSON is YAML
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--specs {path}: cannot read a list of imports ({e})") from None
    here = os.path.dirname(os.path.abspath(path))
    if isinstance(raw, dict):
        unknown = set(raw) - {"root", "imports"}
        if unknown:
            raise ValueError(f"--specs {path}: unknown key(s) {sorted(unknown)}; allowed: ['imports', 'root']")
        if root is None and raw.get("root"):
            root = os.path.join(here, os.path.expanduser(str(raw["root"])))
        raw = raw.get("imports")
    if not isinstance(raw, list) or not raw or not all(isinstance(d, dict) for d in raw):
        raise ValueError(f"--specs {path}: must hold a non-empty list of imports (mappings)")
    return [ImportSpec.from_dict(d, base_dir=root or here) for d in raw]


@dataclass(frozen=True)
class PrepareOptions:
    max_duration_s: float | None = 30.0  # the paper drops clips longer than 30 s
    min_duration_s: float = 0.0
    # wrong_script: a transcript with more than this share of its words in another script than its language's
    # (code-switching below it is kept); None: no check
    max_foreign_script: float | None = DEFAULT_FOREIGN_SCRIPT_SHARE
    batch_size: int = 128  # clips per Ray Data task and per shard (~0.2 s of work; a shard holds <= 8 MiB of audio)


@dataclass(frozen=True)
class Target:
    """One partition an import writes."""

    dataset: str
    language: str
    split: str
    group: int  # index of its ImportSpec
    cleaner: str | None = None
    extra_meta: dict = field(default_factory=dict)


def validate_specs(specs: list[ImportSpec]) -> None:
    """All problems of all specs in one error, before Ray starts."""
    problems = [f"import {i} ({s.recipe or s.dataset}/{s.split or '*'}): {p}"
                for i, s in enumerate(specs) for p in s.problems()]
    seen: dict[tuple[str, str], int] = {}
    if not problems:
        for i, s in enumerate(specs):
            for dataset, _, split in s.targets():
                if (dataset, split) in seen:
                    problems.append(f"import {i}: dataset/split {dataset}/{split} is also import {seen[(dataset, split)]}")
                seen[(dataset, split)] = i
    if problems:
        raise ValueError("invalid import:\n  " + "\n  ".join(problems))


def _member_split(member: str) -> str | None:
    """The split named by an archive member's folders (AISHELL-1: ``train/S0002/BAC009S0002W0122.wav``)."""
    return next((p for p in PurePosixPath(member).parts[:-1] if p in SPLITS), None)


def _stem(member: str) -> str:
    return PurePosixPath(member).stem


def _audio_sources(items: list[dict], max_member_bytes: int | None) -> Iterator[tuple[dict, object]]:
    """(item, path | bytes | AudioRejected) for every item, and a synthetic item for each audio member of a
    scanned archive that no item names (its reason: missing_transcript). Each archive is opened once and read
    in one pass; each member is read once, however many segments it holds."""
    by_archive: dict[str, list[dict]] = {}
    for it in items:
        if it["archive"]:
            by_archive.setdefault(it["archive"], []).append(it)
        else:
            yield it, (it["audio_bytes"] or it["audio_path"] or AudioRejected("missing_audio", "no audio path or bytes"))
    for archive, its in by_archive.items():
        named: dict[str, list[dict]] = {}
        by_stem: dict[str, list[dict]] = {}
        for it in its:
            (named.setdefault(it["member"], []) if it["member"] else by_stem.setdefault(it["key"], [])).append(it)
        scanning = bool(by_stem)
        done: set[int] = set()
        kwargs = {} if max_member_bytes is None else {"max_bytes": max_member_bytes}
        try:
            for name, data in iter_members(archive, None if scanning else set(named), **kwargs):
                matched = named.get(name) or by_stem.get(_stem(name)) or []
                if not matched and scanning and name.lower().endswith(AUDIO_EXTENSIONS):
                    matched = [{**its[0], "key": _stem(name), "member": name, "split": _member_split(name),
                                "source": f"{archive}::{name}", "_missing_transcript": True}]
                for it in matched:
                    if id(it) in done:  # a member name that occurs twice: the first one is used
                        continue
                    done.add(id(it))
                    if it["split"] is None:
                        it = {**it, "split": _member_split(name), "source": f"{archive}::{name}"}
                    yield it, (AudioRejected(data.reason, data.detail) if isinstance(data, MemberError) else data)
        except MemberError as e:
            for it in its:
                if id(it) not in done:
                    done.add(id(it))
                    yield it, AudioRejected("unreadable_member", e.detail)
        for it in its:
            if id(it) not in done:
                yield it, AudioRejected("missing_audio", f"{it['member'] or it['key']} is not in {archive}")


def _target_of(item: dict, routes: dict[tuple[int, str | None], int]) -> int:
    if item[_SPEC] >= 0:
        return item[_SPEC]
    return routes.get((item[_GROUP], item["split"]), routes[(item[_GROUP], None)])


def read_sources(block: pa.Table, max_member_bytes: int | None = None, chunk_rows: int = 128) -> Iterator[pa.Table]:
    """Read the audio of a block's items that lies in archives (one pass per archive, each member once) into
    ``audio_bytes``, resolve each scanned item's member and split, and turn what cannot be read into a reject
    (``_reason``/``_detail``). Loose files pass through unread. Yields chunks of ``chunk_rows``, so that the
    caller decodes a chunk before the next one is read: a task holds one chunk of members, not an archive."""
    rows: list[dict] = []
    for item, src in _audio_sources(block.to_pylist(), max_member_bytes):
        row = {name: item.get(name) for name in _READ_SCHEMA.names}
        if isinstance(src, AudioRejected):
            row["_reason"], row["_detail"] = src.reason, src.detail
        elif item.get("_missing_transcript"):
            row["_reason"], row["_detail"] = "missing_transcript", item["member"]
        elif item["archive"]:
            row["audio_bytes"] = src
        rows.append(row)
        if len(rows) >= chunk_rows:
            yield pa.Table.from_pylist(rows, schema=_READ_SCHEMA)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=_READ_SCHEMA)


def _utterance(item: dict, target: dict, max_duration_s: float | None, min_duration_s: float,
               max_foreign_script: float | None = None) -> dict:
    """One read source item -> one utterance row, or AudioRejected with the reason."""
    if item.get("_reason"):
        raise AudioRejected(item["_reason"], item.get("_detail") or "")
    raw_text = item["raw_text"] or ""
    text = normalize_text(clean_text(raw_text, target["cleaner"]))
    if not text:
        raise AudioRejected("empty_text", repr(raw_text[:80]))
    if max_foreign_script is not None and not fits_script(text, target["language"], max_foreign_script):
        raise AudioRejected("wrong_script", f"{script_share(text, target['language']):.0%} of the words are not in "
                                            f"{target['language']}'s script (at most {max_foreign_script:.0%}): "
                                            f"{text[:60]!r}")
    src = item["audio_bytes"] or item["audio_path"]
    if not src:
        raise AudioRejected("missing_audio", "no audio path or bytes")
    audio = decode_audio(src, max_duration_s=max_duration_s, min_duration_s=min_duration_s,
                         start_s=item["start_s"], end_s=item["end_s"])
    return {"id": utterance_id(target["dataset"], target["split"], item["key"]),
            "dataset": target["dataset"], "language": target["language"], "split": target["split"],
            "audio": encode_flac(audio.samples), "duration_s": audio.duration_s, "text": text,
            "raw_text": raw_text, "speaker": item["speaker"], "source": item["source"]}


def process_batch(batch: pa.Table, targets: list[dict], routes: dict, max_duration_s: float | None,
                  min_duration_s: float, max_foreign_script: float | None = None) -> Iterator[tuple[int, tuple[str, dict]]]:
    """Read source items -> ``(target index, ("row", utterance) | ("reject", reject))``, one per item.
    Pure apart from reading the named audio files; one bad item never stops the others."""
    for item in batch.to_pylist():
        i = _target_of(item, routes)
        try:
            yield i, ("row", _utterance(item, targets[i], max_duration_s, min_duration_s, max_foreign_script))
        except AudioRejected as e:
            yield i, ("reject", {"source": item["source"], "reason": e.reason, "detail": e.detail})
        except Exception as e:  # anything unexpected about one clip must not kill the job
            yield i, ("reject", {"source": item["source"], "reason": "unreadable_audio",
                                 "detail": f"{type(e).__name__}: {e}"[:200]})


def process_and_write(batch: pa.Table, targets: list[dict], routes: dict, max_duration_s: float | None,
                      min_duration_s: float, generations: list[Location],
                      max_foreign_script: float | None = None) -> pa.Table:
    """Decode, resample, encode and normalise a batch of read items, write its accepted utterances
    as one shard per target into that target's new generation (``generations``, pickled with their filesystem), and
    return a small report (shards written, records rejected) instead of the audio.

    A shard is written whole (one object in a bucket) under a new name, so it exists whole or not at all; only the
    shards reported here are committed (a failed attempt's shard is left out); a retried task writes new shards, and
    rows written twice are kept once when committing.
    """
    report: list[dict] = []
    accepted: dict[int, list[dict]] = {}
    for i, (kind, value) in process_batch(batch, targets, routes, max_duration_s, min_duration_s, max_foreign_script):
        if kind == "reject":
            report.append(dict(value, spec=i, kind="rejected", shard=None))
        else:
            accepted.setdefault(i, []).append(value)
    for i, all_rows in accepted.items():
        for rows in _pieces(all_rows, SHARD_MAX_AUDIO_BYTES):
            shard = generations[i].join(f"part-{uuid.uuid4().hex}.parquet")
            write_shard(shard, pa.Table.from_pylist(rows, schema=UTTERANCE_SCHEMA), **PARQUET_WRITE_ARGS)
            report.append({"spec": i, "kind": "shard", "shard": shard.name, "source": None, "reason": None,
                           "detail": None, "ids": [r["id"] for r in rows], "sources": [r["source"] for r in rows],
                           "durations": [r["duration_s"] for r in rows]})
    return pa.Table.from_pylist(report, schema=REPORT_SCHEMA)


def import_block(block: pa.Table, targets: list[dict], routes: dict, max_duration_s: float | None,
                 min_duration_s: float, generations: list[Location], max_foreign_script: float | None = None,
                 chunk_rows: int = 128, share_rows: int | None = None) -> Iterator[pa.Table]:
    """The Ray Data task of ``prepare``, one per block (see ``_blocks``): read its archive members a chunk at a
    time and process and write each chunk before reading the next, yielding one report per chunk. Members stay
    in the task that read them: all handed on to other tasks, they piled up in the object store faster than
    they were decoded (inflating a clip costs much less than decoding and encoding it) and were spilled to disk.

    The exception is a block larger than its share of the import (``share_rows``: the listed items over the
    CPUs), a tar.gz that holds most of a corpus (FLEURS ships a split as one): alone it would keep one CPU busy
    while the others idle. Its task hands chunks to helper tasks, at most ``helpers_for(...)`` at a time (one
    may wait for a CPU, so that a helper never waits for the reader), and decodes the chunk it has read itself
    when they are all busy: a bounded hand-off, never more than that many chunks in the object store."""
    import ray

    args = (targets, routes, max_duration_s, min_duration_s, generations, max_foreign_script)
    helpers = helpers_for(len(block), chunk_rows, share_rows)
    handed: list = []  # ObjectRefs of the helpers' reports
    for chunk in read_sources(block, chunk_rows=chunk_rows):
        if handed:
            done, handed = ray.wait(handed, num_returns=len(handed), timeout=0)
            yield from ray.get(done)
        if len(handed) < helpers:
            handed.append(_chunk_task().remote(chunk, *args))
        else:
            yield process_and_write(chunk, *args)
    yield from ray.get(handed)  # blocked in ray.get, this task lends its CPU to the helpers


def share_of(listed_rows: int, cpus: float) -> int | None:
    """One CPU's share of an import of ``listed_rows`` listed items (None when nothing was listed, e.g. Parquet
    input, whose rows are not counted before the tasks run)."""
    return -(-listed_rows // max(1, int(cpus))) if listed_rows else None


def helpers_for(block_rows: int, chunk_rows: int, share_rows: int | None) -> int:
    """Chunks a task of ``block_rows`` items may have in helper tasks at a time: none for a block within its
    share of the import (``share_rows``) or of one chunk; else one per share it holds beyond the first plus one
    waiting, at most MAX_HELPERS (reading a tar.gz alone keeps a few decoding CPUs busy, not more)."""
    if share_rows is None or block_rows <= max(share_rows, chunk_rows):
        return 0
    return min(MAX_HELPERS, -(-block_rows // share_rows))


@functools.cache
def _chunk_task():
    import ray

    return ray.remote(num_cpus=1)(process_and_write)


def _pieces(rows: list[dict], max_audio_bytes: int) -> Iterator[list[dict]]:
    """Consecutive runs of ``rows`` with at most ``max_audio_bytes`` of audio each (a longer clip alone)."""
    piece, held = [], 0
    for r in rows:
        if piece and held + len(r["audio"]) > max_audio_bytes:
            yield piece
            piece, held = [], 0
        piece.append(r)
        held += len(r["audio"])
    if piece:
        yield piece


def _plan(specs: list[ImportSpec]) -> tuple[list[Target], dict[tuple[int, str | None], int]]:
    """Every partition the specs write, and the route (spec index, split) -> target index
    (``(spec, None)``: where a record of that spec with no known split is counted)."""
    targets: list[Target] = []
    routes: dict[tuple[int, str | None], int] = {}
    for g, spec in enumerate(specs):
        cleaner = get_recipe(spec.recipe).cleaner if spec.recipe else None
        for dataset, language, split in spec.targets():
            routes[(g, split)] = len(targets)
            routes.setdefault((g, None), len(targets))
            targets.append(Target(dataset, language, split, g, cleaner))
    return targets, routes


def _list_recipe(g: int, spec: ImportSpec, targets: list[Target], routes: dict) -> tuple[list[dict], dict[int, list[dict]]]:
    """List a recipe's items, give each its target (making the split where the corpus has none)."""
    recipe = get_recipe(spec.recipe)
    listing = recipe.lister(spec.input, RecipeOptions(language=spec.language or None))
    if recipe.made_split_test:
        made = speaker_disjoint_split([(it["key"], it["speaker"]) for it in listing.items],
                                      spec.test_utterances or recipe.made_split_test, spec.seed)
        for it in listing.items:
            it["split"] = made.split_of(it["key"])
        for i, t in enumerate(targets):
            if t.group == g:
                targets[i] = Target(t.dataset, t.language, t.split, g, t.cleaner, {"split_rule": made.describe()})
    rejects: dict[int, list[dict]] = {}
    for r in listing.rejects:
        i = routes.get((g, r.pop("split", None)), routes[(g, None)])
        rejects.setdefault(i, []).append(r)
    for it in listing.items:
        it[_SPEC] = -1 if it["split"] is None else routes.get((g, it["split"]), -2)
        it[_GROUP] = g
    unknown = [it for it in listing.items if it[_SPEC] == -2]
    for it in unknown:  # a split the recipe does not write (it should not list it): counted, not lost
        rejects.setdefault(routes[(g, None)], []).append(
            {"source": it["source"], "reason": "malformed_manifest", "detail": f"split {it['split']!r} not written"})
    return [it for it in listing.items if it[_SPEC] != -2], rejects


def _blocks(items: list[dict], block_rows: int) -> list[pa.Table]:
    """The tasks' blocks: loose files in blocks of ``block_rows``; a tar or tar.gz whole (it has no index, so one
    task reads it in one pass); a zip in blocks of ``block_rows`` members when every item names its member (a zip
    is read by name, so its blocks cost no more than the whole, and a corpus of few large zips still keeps every
    CPU busy), else whole (its members are matched by scanning it). The largest blocks first, so that they do
    not start last."""
    by_archive: dict[str, list[dict]] = {}
    loose = []
    for it in items:
        (by_archive.setdefault(it["archive"], []) if it.get("archive") else loose).append(it)
    groups = []
    for archive, its in [(None, loose), *by_archive.items()]:
        if archive is None or (archive_kind(archive) == "zip" and all(it.get("member") for it in its)):
            groups += [its[o:o + block_rows] for o in range(0, len(its), block_rows)]
        else:
            groups.append(its)
    groups.sort(key=len, reverse=True)
    return [pa.Table.from_pylist(g, schema=_SOURCE_WITH_SPEC) for g in groups]


def _source_dataset(specs: list[ImportSpec], targets: list[Target], routes: dict, block_rows: int):
    """A Ray Dataset of source items for all specs, plus the rejects found while listing (by target)."""
    import ray

    listed_rejects: dict[int, list[dict]] = {i: [] for i in range(len(targets))}
    datasets, listed = [], []
    for g, spec in enumerate(specs):
        if spec.recipe:
            items, rejects = _list_recipe(g, spec, targets, routes)
            for i, rs in rejects.items():
                listed_rejects[i] += rs
            listed += items
            continue
        t = routes[(g, spec.split)]
        if spec.format == "parquet":
            base = spec.input if os.path.isdir(spec.input) else os.path.dirname(os.path.abspath(spec.input))

            def to_items(table: pa.Table, _t=t, _g=g, _opts=spec.options, _base=base) -> pa.Table:
                items = parquet_rows_to_items(table, _opts, _base)
                return (items.append_column(_SPEC, pa.array([_t] * len(items), pa.int32()))
                        .append_column(_GROUP, pa.array([_g] * len(items), pa.int32())))

            datasets.append(ray.data.read_parquet(spec.input, include_paths=True)
                            .map_batches(to_items, batch_format="pyarrow", batch_size=block_rows))
            continue
        items, rejects = LISTERS[spec.format](spec.input, spec.options)
        listed_rejects[t] += rejects
        for it in items:
            it[_SPEC], it[_GROUP] = t, g
        listed += items
    if listed:
        datasets.append(ray.data.from_arrow(_blocks(listed, block_rows)))
    if not datasets:
        return None, listed_rejects, 0
    ds = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    return ds, listed_rejects, len(listed)


def _source_order(source: str) -> tuple[str, int, str]:
    """Sort key for ``path:line`` sources: by file, then numerically by line."""
    head, _, tail = source.rpartition(":")
    return (head, int(tail), "") if head and tail.isdigit() else (source, 0, source)


def _keep_first(shards: list[list[tuple[str, str]]]) -> tuple[list[list[bool]], list[dict]]:
    """Which rows to keep, one per id (the first in source order) across shards given as (id, source) pairs, and a
    reject for each other one. Pure."""
    winner: dict[str, str] = {}
    for pairs in shards:
        for uid, src in pairs:
            if uid not in winner or _source_order(src) < _source_order(winner[uid]):
                winner[uid] = src
    masks, rejects, kept = [], [], set()
    for pairs in shards:
        keep = []
        for uid, src in pairs:  # a retried task may have written the very same row twice: keep it once
            keep.append(winner[uid] == src and uid not in kept)
            if keep[-1]:
                kept.add(uid)
        # an exact copy of the kept row (same id and source) is not a reject: nothing is lost
        rejects += [{"source": src, "reason": "duplicate_id", "detail": uid}
                    for (uid, src), k in zip(pairs, keep) if not k and src != winner[uid]]
        masks.append(keep)
    return masks, rejects


def _rewrite_kept(path: str, keep: list[bool], filesystem=None) -> None:
    """Rewrite a shard with only the rows ``keep`` marks (it is not committed yet, so in place)."""
    table = pq.read_table(path, filesystem=filesystem).filter(pa.array(keep))
    pq.write_table(table, path, filesystem=filesystem, **PARQUET_WRITE_ARGS)


def _dedupe(files: list[str], filesystem=None) -> list[dict]:
    """Keep one row per id (the first in source order) across written shards, read from the files; reject the
    others. A shard that loses rows is rewritten."""
    pairs = []
    for f in files:
        t = pq.read_table(f, columns=["id", "source"], filesystem=filesystem)
        pairs.append(list(zip(t["id"].to_pylist(), t["source"].to_pylist())))
    masks, rejects = _keep_first(pairs)
    for f, keep in zip(files, masks):
        if not all(keep):
            _rewrite_kept(f, keep, filesystem)
    return rejects


def _commit(store: Location, spec: ImportSpec, target: Target, generation: Location, shards: list[dict],
            rejects: list[dict], opts: PrepareOptions) -> dict:
    """Dedupe a target's shards (their task reports: name in ``generation``, ids, sources, durations) without
    reading them back, write its rejects, then commit the generation."""
    shards = sorted(shards, key=lambda r: r["shard"])
    masks, dupes = _keep_first([list(zip(r["ids"], r["sources"])) for r in shards])
    rejects = list(rejects) + dupes
    utterances, seconds, files = 0, 0.0, []
    for r, keep in zip(shards, masks):
        path = generation.join(r["shard"]).path
        if not any(keep):
            generation.fs.delete_file(path)
            continue
        if not all(keep):
            _rewrite_kept(path, keep, generation.fs)
        utterances += sum(keep)
        seconds += sum(d for d, k in zip(r["durations"], keep) if k)
        files.append(r["shard"])
    rejects.sort(key=lambda r: (r["source"], r["reason"]))
    generation.join(REJECTS_FILE).write_text("".join(
        json.dumps({"source": r["source"], "reason": r["reason"], "detail": r["detail"] or ""}, ensure_ascii=False)
        + "\n" for r in rejects))
    meta = {
        "dataset": target.dataset, "language": target.language, "split": target.split,
        "format": f"recipe:{spec.recipe}" if spec.recipe else spec.format, "input": os.path.abspath(spec.input),
        "utterances": utterances, "hours": seconds / 3600.0,
        "rejected": dict(sorted(collections.Counter(r["reason"] for r in rejects).items())),
        "options": asdict(opts), "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if target.cleaner:
        meta["cleaner"] = target.cleaner
    meta.update(target.extra_meta)
    publish_partition(store, generation, target.split, target.language, target.dataset, files, meta)
    return meta


def prepare(specs: list[ImportSpec], store: str | os.PathLike | Location,
            opts: PrepareOptions = PrepareOptions()) -> list[dict]:
    """Import every spec into ``store`` (a local folder or a bucket location); returns each written partition's meta
    (utterances, hours, rejected by reason). Needs Ray initialised (``runtime.init_ray``). Each dataset/split
    partition is replaced as a whole: its shards go to a new generation, committed last (see data/store.py); a
    recipe's split that its download does not hold (nothing listed, nothing rejected) is not written.
    """
    validate_specs(specs)
    targets, routes = _plan(specs)
    store = resolve(store)
    generations = [new_generation(store, t.split, t.language, t.dataset) for t in targets]
    committed: set[int] = set()
    try:
        import ray

        # The pipeline is one operator, so Ray Data's per-operator resource reservation only holds CPUs
        # back: on a 2-CPU node it ran one task at a time (measured: 12 x 0.3 s tasks took 4.1 s with it,
        # 1.95 s without). Datasets copy the context when created, so set it before building them.
        ctx = ray.data.DataContext.get_current()
        reservation, ctx.op_resource_reservation_enabled = ctx.op_resource_reservation_enabled, False
        try:
            ds, listed, n_listed = _source_dataset(specs, targets, routes, block_rows=opts.batch_size)
        finally:
            ctx.op_resource_reservation_enabled = reservation
        shards: dict[int, list[dict]] = {i: [] for i in range(len(targets))}
        rejects: dict[int, list[dict]] = {i: list(listed[i]) for i in range(len(targets))}
        if ds is not None:
            share_rows = share_of(n_listed, ray.cluster_resources().get("CPU", 1))
            kwargs = {"targets": [asdict(t) for t in targets], "routes": routes,
                      "max_duration_s": opts.max_duration_s, "min_duration_s": opts.min_duration_s,
                      "generations": generations, "max_foreign_script": opts.max_foreign_script}
            # One stateless task per block (the work is CPU-bound and per clip; tasks need no warm-up): a whole
            # block (batch_size=None), so that a tar.gz is read by one task in one pass; it reads, decodes and
            # writes its own shards, and returns only reports.
            reports = ds.map_batches(import_block, batch_format="pyarrow", batch_size=None,
                                     fn_kwargs={**kwargs, "chunk_rows": opts.batch_size, "share_rows": share_rows})
            for batch in reports.iter_batches(batch_format="pyarrow", batch_size=None):
                for r in batch.to_pylist():
                    if r["kind"] == "shard":
                        shards[r["spec"]].append(r)
                    else:
                        rejects[r["spec"]].append(r)
        metas = []
        for i, t in enumerate(targets):
            spec = specs[t.group]
            if spec.recipe and not shards[i] and not rejects[i]:
                continue
            metas.append(_commit(store, spec, t, generations[i], shards[i], rejects[i], opts))
            committed.add(i)
        return metas
    finally:
        for i, generation in enumerate(generations):
            if i not in committed:  # a failed import's shards: never committed, so never read; space only
                try:
                    generation.delete()
                except OSError:
                    pass


def format_summary(metas: list[dict]) -> str:
    lines = [f"{'dataset':<22}{'lang':<6}{'split':<7}{'utterances':>11}{'hours':>9}{'rejected':>10}  reasons"]
    for m in metas:
        n_rej = sum(m["rejected"].values())
        reasons = ", ".join(f"{k}={v}" for k, v in m["rejected"].items()) or "-"
        lines.append(f"{m['dataset']:<22}{m['language']:<6}{m['split']:<7}{m['utterances']:>11}"
                     f"{m['hours']:>9.3f}{n_rej:>10}  {reasons}")
    tot_u = sum(m["utterances"] for m in metas)
    tot_r = sum(sum(m["rejected"].values()) for m in metas)
    lines.append(f"{'total':<35}{tot_u:>11}{sum(m['hours'] for m in metas):>9.3f}{tot_r:>10}")
    return "\n".join(lines)
