"""Import corpora into the store with Ray Data: list -> decode/resample/encode/normalise -> Parquet shards.

    polyglot-lion prepare --format jsonl --input corpus/nsc/train.jsonl --dataset nsc --language en \
        --split train --store store/

Bad records never stop the job: every record ends up either as an utterance of its partition or as a line
of that partition's _rejects.jsonl with its reason (see audio.REJECT_REASONS). Several imports can run in
one pipeline (``prepare(specs=[...])``, or ``polyglot-lion prepare --specs FILE``).
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .audio import AudioRejected, decode_audio, encode_flac
from .importers import FORMATS, LISTERS, SOURCE_SCHEMA, FormatOptions, parquet_rows_to_items
from .schema import UTTERANCE_SCHEMA, check_dataset_name, check_language, check_split, utterance_id
from .store import META_FILE, REJECTS_FILE, cleanup, new_staging_dir, publish_partition
from .text import normalize_text

_PART = "_part"
_SPEC = "_spec"
# Processed rows are utterances plus the partition they go to (ok-{spec} or rej-{spec}). Ray writes them
# partitioned by _part and drops that column, so accepted shards are exactly UTTERANCE_SCHEMA and need no
# rewrite. Rejected rows never reach the store: in them ``text`` carries the reason, ``raw_text`` the detail.
PROCESSED_SCHEMA = UTTERANCE_SCHEMA.append(pa.field(_PART, pa.string()))
_SOURCE_WITH_SPEC = SOURCE_SCHEMA.append(pa.field(_SPEC, pa.int32()))


@dataclass(frozen=True)
class ImportSpec:
    """One corpus split to import: which reader, where it is, and the partition it becomes."""

    format: str
    input: str
    dataset: str
    language: str
    split: str
    options: FormatOptions = field(default_factory=FormatOptions)

    def problems(self) -> list[str]:
        out = []
        if self.format not in FORMATS:
            out.append(f"format must be one of {list(FORMATS)} (is {self.format!r})")
        if not os.path.exists(self.input):
            out.append(f"input {self.input!r} does not exist")
        for check, value in ((check_dataset_name, self.dataset), (check_language, self.language),
                             (check_split, self.split)):
            try:
                check(value)
            except ValueError as e:
                out.append(str(e))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "ImportSpec":
        d = dict(d)
        opts = {k: d.pop(k) for k in list(d) if k in FormatOptions.__dataclass_fields__}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"import spec: unknown key(s) {sorted(unknown)}; allowed: "
                             f"{sorted(set(cls.__dataclass_fields__) - {'options'}) + sorted(FormatOptions.__dataclass_fields__)}")
        return cls(options=FormatOptions(**opts), **d)


@dataclass(frozen=True)
class PrepareOptions:
    max_duration_s: float | None = 30.0  # the paper drops clips longer than 30 s
    min_duration_s: float = 0.0
    batch_size: int = 32  # clips per Ray Data batch
    rows_per_file: int = 1000  # at least this many utterances per Parquet shard (~100 MB of 5 s clips)


def validate_specs(specs: list[ImportSpec]) -> None:
    """All problems of all specs in one error, before Ray starts."""
    problems = [f"import {i} ({s.dataset}/{s.split}): {p}" for i, s in enumerate(specs) for p in s.problems()]
    seen: dict[tuple[str, str], int] = {}
    for i, s in enumerate(specs):
        if (s.dataset, s.split) in seen:
            problems.append(f"import {i}: dataset/split {s.dataset}/{s.split} is also import {seen[(s.dataset, s.split)]}")
        seen[(s.dataset, s.split)] = i
    if problems:
        raise ValueError("invalid import:\n  " + "\n  ".join(problems))


def process_batch(batch: pa.Table, specs: list[dict], max_duration_s: float | None,
                  min_duration_s: float) -> pa.Table:
    """Source items -> utterance rows (or reject rows). Pure apart from reading the named audio files."""
    rows = []
    for item in batch.to_pylist():
        spec = specs[item[_SPEC]]
        row = {
            "id": utterance_id(spec["dataset"], spec["split"], item["key"]),
            "dataset": spec["dataset"], "language": spec["language"], "split": spec["split"],
            "audio": b"", "duration_s": 0.0, "text": "", "raw_text": item["raw_text"] or "",
            "speaker": item["speaker"], "source": item["source"],
        }
        reason = None
        try:
            text = normalize_text(row["raw_text"])
            if not text:
                raise AudioRejected("empty_text", repr(row["raw_text"][:80]))
            src = item["audio_bytes"] if item["audio_bytes"] else item["audio_path"]
            if not src:
                raise AudioRejected("missing_audio", "no audio path or bytes")
            audio = decode_audio(src, max_duration_s=max_duration_s, min_duration_s=min_duration_s)
            row.update(audio=encode_flac(audio.samples), duration_s=audio.duration_s, text=text)
        except AudioRejected as e:
            reason, detail = e.reason, e.detail
        except Exception as e:  # anything unexpected about one clip must not kill the job
            reason, detail = "unreadable_audio", f"{type(e).__name__}: {e}"[:200]
        if reason:
            row.update(audio=b"", duration_s=0.0, text=reason, raw_text=detail)
        row[_PART] = f"{'rej' if reason else 'ok'}-{item[_SPEC]}"
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=PROCESSED_SCHEMA)


def _source_dataset(specs: list[ImportSpec], block_rows: int):
    """A Ray Dataset of source items for all specs, plus the rejects found while listing."""
    import ray

    listed_rejects: dict[int, list[dict]] = {}
    datasets = []
    for i, spec in enumerate(specs):
        if spec.format == "parquet":
            listed_rejects[i] = []
            base = spec.input if os.path.isdir(spec.input) else os.path.dirname(os.path.abspath(spec.input))

            def to_items(t: pa.Table, _i=i, _opts=spec.options, _base=base) -> pa.Table:
                items = parquet_rows_to_items(t, _opts, _base)
                return items.append_column(_SPEC, pa.array([_i] * len(items), pa.int32()))

            datasets.append(ray.data.read_parquet(spec.input, include_paths=True)
                            .map_batches(to_items, batch_format="pyarrow", batch_size=block_rows))
            continue
        items, rejects = LISTERS[spec.format](spec.input, spec.options)
        listed_rejects[i] = rejects
        for it in items:
            it[_SPEC] = i
        if items:
            table = pa.Table.from_pylist(items, schema=_SOURCE_WITH_SPEC)
            blocks = [table.slice(o, block_rows) for o in range(0, len(table), block_rows)]
            datasets.append(ray.data.from_arrow(blocks))
    if not datasets:
        return None, listed_rejects
    ds = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    return ds, listed_rejects


def _dedupe(files: list[str]) -> list[dict]:
    """Drop repeated ids (keeping the first) from written shards; returns rejects for the dropped rows."""
    seen: set[str] = set()
    rejects = []
    for f in files:
        t = pq.read_table(f, columns=["id", "source"])
        keep = []
        for uid, src in zip(t["id"].to_pylist(), t["source"].to_pylist()):
            keep.append(uid not in seen)
            if uid in seen:
                rejects.append({"source": src, "reason": "duplicate_id", "detail": uid})
            seen.add(uid)
        if not all(keep):
            full = pq.read_table(f)
            pq.write_table(full.filter(pa.array(keep)), f)
    return rejects


def _commit(store: str, staging: Path, i: int, spec: ImportSpec, listed: list[dict], opts: PrepareOptions) -> dict:
    ok_dir, rej_dir = staging / "raw" / f"{_PART}=ok-{i}", staging / "raw" / f"{_PART}=rej-{i}"
    ok_files = sorted(str(p) for p in ok_dir.glob("*.parquet")) if ok_dir.is_dir() else []
    rejects = list(listed) + _dedupe(ok_files)
    if rej_dir.is_dir():
        for f in sorted(rej_dir.glob("*.parquet")):
            t = pq.read_table(f, columns=["source", "text", "raw_text"])  # reason, detail (see PROCESSED_SCHEMA)
            rejects += [{"source": s, "reason": r, "detail": d or ""} for s, r, d in zip(
                t["source"].to_pylist(), t["text"].to_pylist(), t["raw_text"].to_pylist())]
    built = staging / f"part-{i}"
    built.mkdir()
    utterances, seconds = 0, 0.0
    for n, f in enumerate(ok_files):
        md = pq.read_table(f, columns=["duration_s"])
        if md.num_rows == 0:
            continue
        utterances += md.num_rows
        seconds += pc.sum(md["duration_s"]).as_py()
        os.replace(f, built / f"part-{n:05d}.parquet")
    rejects.sort(key=lambda r: (r["source"], r["reason"]))
    with open(built / REJECTS_FILE, "w", encoding="utf-8") as fh:
        for r in rejects:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    meta = {
        "dataset": spec.dataset, "language": spec.language, "split": spec.split,
        "format": spec.format, "input": os.path.abspath(spec.input),
        "utterances": utterances, "hours": seconds / 3600.0,
        "rejected": dict(sorted(collections.Counter(r["reason"] for r in rejects).items())),
        "options": asdict(opts), "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (built / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    publish_partition(store, built, spec.split, spec.language, spec.dataset)
    return meta


def prepare(specs: list[ImportSpec], store: str, opts: PrepareOptions = PrepareOptions()) -> list[dict]:
    """Import every spec into ``store``; returns each partition's meta (utterances, hours, rejected by reason).

    Needs Ray initialised (``runtime.init_ray``). Each dataset/split partition is replaced as a whole.
    """
    validate_specs(specs)
    os.makedirs(store, exist_ok=True)
    staging = new_staging_dir(store)
    try:
        ds, listed = _source_dataset(specs, block_rows=max(opts.batch_size * 2, 16))
        if ds is not None:
            spec_dicts = [asdict(s) for s in specs]
            processed = ds.map_batches(
                process_batch, batch_format="pyarrow", batch_size=opts.batch_size,
                fn_kwargs={"specs": spec_dicts, "max_duration_s": opts.max_duration_s,
                           "min_duration_s": opts.min_duration_s},
            )
            processed.write_parquet(str(staging / "raw"), partition_cols=[_PART],
                                    min_rows_per_file=opts.rows_per_file)
        return [_commit(store, staging, i, s, listed[i], opts) for i, s in enumerate(specs)]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        cleanup(store)


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
