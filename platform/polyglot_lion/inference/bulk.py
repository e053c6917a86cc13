"""Bulk transcription of archives with Ray Data: every input gets exactly one output row, and a killed job
loses nothing.

    list inputs (driver: folders, .tar/.tar.gz/.zip, JSONL manifests, a store split)
      -> drop ids already in OUT/parts (resume)
      -> read + decode to 16 kHz (CPU tasks; no GPU: in the actors)  error: unreadable_audio, empty_audio, too_long, ...
      -> transcribe (actor pool: one GPU per actor, or CPU actors) and write OUT/parts/part-*.parquet
      -> OUT/transcripts.parquet + OUT/transcripts.jsonl + OUT/summary.json (all parts, sorted by id)

Output columns: id, source, text, language, duration_s, error (null when it worked, the reason otherwise),
seconds (compute time), model.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
OUTPUT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                           ("language", pa.string()), ("duration_s", pa.float64()), ("error", pa.string()),
                           ("seconds", pa.float64()), ("model", pa.string())])
ERRORS = {
    "unreadable_audio": "not audio, an unsupported format, or corrupt",
    "truncated_audio": "the file ends before its header says it does",
    "empty_audio": "no samples (0 bytes or 0 frames)",
    "silent_audio": "every sample is zero",
    "too_long": "longer than --max-duration",
    "missing_audio": "a manifest names a file that does not exist",
    "malformed_manifest": "a manifest line that is not JSON or has no audio path",
    "unreadable_member": "an archive member that could not be read",
    "transcription_failed": "the model raised an error on this item",
}


@dataclass
class BulkOptions:
    limit: int | None = None  # at most this many inputs (in id order)
    language: str | None = None  # force a language; None = agnostic
    max_duration_s: float | None = None  # longer inputs get error too_long (None: chunked, any length)
    batch_size: int = 16
    max_new_tokens: int | None = None  # fixed generation budget per clip; None: by duration (max_new_tokens_for)
    actors: int | None = None  # transcriber actors; default: one per GPU, else 1
    split: str = "test"  # for a store input
    tracking_uri: str | None = None


def _is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_members(path: str, prefix: str) -> list[dict]:
    rows = []
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    rows.append({"id": f"{prefix}/{info.filename}", "source": path, "kind": "zip",
                                 "path": path, "member": info.filename})
    else:
        with tarfile.open(path) as t:
            for m in t:
                if m.isfile():
                    rows.append({"id": f"{prefix}/{m.name}", "source": path, "kind": "tar",
                                 "path": path, "member": m.name})
    return rows


def _manifest_rows(path: str, prefix: str) -> list[dict]:
    rows, base = [], os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                audio = rec.get("audio") or rec.get("audio_filepath") or rec.get("path")
                if not isinstance(audio, str) or not audio:
                    raise ValueError("no audio/audio_filepath/path field")
            except (ValueError, AttributeError) as e:
                rows.append({"id": f"{prefix}:{n}", "source": f"{path}:{n}", "kind": "error", "path": "",
                             "member": f"malformed_manifest: line {n}: {str(e)[:120]}"})
                continue
            full = audio if os.path.isabs(audio) else os.path.join(base, audio)
            rows.append({"id": str(rec.get("id") or f"{prefix}/{audio}"), "source": full, "kind": "file",
                         "path": full, "member": ""})
    return rows


def _store_rows(store: str, split: str) -> list[dict]:
    from ..data.store import list_partitions

    parts = list_partitions(store, split)
    if not parts:
        raise FileNotFoundError(f"store {store!r} has no split {split!r}")
    rows = []
    for p in parts:
        for f in p.files:
            for i in pq.read_table(f, columns=["id"])["id"].to_pylist():
                rows.append({"id": i, "source": f, "kind": "store", "path": f, "member": i})
    return rows


def list_inputs(paths: list[str], split: str = "test") -> list[dict]:
    """Every input as a work item {id, source, kind, path, member}; ids are stable across runs. Archives
    inside folders are opened too. Raises FileNotFoundError for a path that does not exist."""
    rows: list[dict] = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"input {path!r} does not exist (give a folder, .tar/.tar.gz/.zip, "
                                    f".jsonl manifest or a store folder)")
        if p.is_dir() and (p / "data").is_dir():
            rows += _store_rows(str(p), split)
        elif p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                rel = f"{p.name}/{f.relative_to(p)}"
                if _is_archive(f.name):
                    rows += _archive_members(str(f), rel)
                else:
                    rows.append({"id": rel, "source": str(f), "kind": "file", "path": str(f), "member": ""})
        elif _is_archive(p.name):
            rows += _archive_members(str(p), p.name)
        elif p.suffix == ".jsonl":
            rows += _manifest_rows(str(p), p.name)
        else:
            rows.append({"id": p.name, "source": str(p), "kind": "file", "path": str(p), "member": ""})
    seen: dict[str, int] = {}
    for r in rows:  # ids must be unique for resume to be exact: number repeats
        n = seen.get(r["id"], 0)
        seen[r["id"]] = n + 1
        if n:
            r["id"] = f"{r['id']}#{n}"
    return rows


# --- Ray Data stages ----------------------------------------------------------------------------------------

def _read_bytes(items: list[dict]) -> list[bytes | Exception]:
    """Read a batch of items; archives are opened once per batch (tar.gz in one sequential pass)."""
    out: list[bytes | Exception] = [b""] * len(items)
    by_archive: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        if it["kind"] == "file":
            try:
                with open(it["path"], "rb") as f:
                    out[i] = f.read()
            except FileNotFoundError:
                out[i] = FileNotFoundError("missing_audio")
            except OSError as e:
                out[i] = OSError(f"unreadable_audio: {e.strerror}")
        elif it["kind"] == "error":
            out[i] = ValueError(it["member"])
        else:
            by_archive.setdefault((it["kind"], it["path"]), []).append(i)
    for (kind, path), idx in by_archive.items():
        want = {items[i]["member"]: i for i in idx}
        try:
            if kind == "zip":
                with zipfile.ZipFile(path) as z:
                    for name, i in want.items():
                        out[i] = z.read(name)
            elif kind == "tar":
                with tarfile.open(path) as t:
                    for m in t:
                        if m.name in want:
                            out[want.pop(m.name)] = t.extractfile(m).read()
                            if not want:
                                break
            elif kind == "store":
                table = pq.read_table(path, columns=["id", "audio"])
                audio = dict(zip(table["id"].to_pylist(), table["audio"].to_pylist()))
                for name, i in want.items():
                    out[i] = audio[name]
        except Exception as e:  # a corrupt archive: its members are errors, the job goes on
            for i in idx:
                if not isinstance(out[i], bytes) or not out[i]:
                    out[i] = OSError(f"unreadable_member: {type(e).__name__}: {str(e)[:120]}")
    return out


def read_and_decode(batch: dict, max_duration_s: float | None = None) -> dict:
    """Work items -> {id, source, samples (float32 bytes), duration_s, error}. Never raises for one item."""
    from ..data.audio import AudioRejected, decode_audio

    items = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
    raw = _read_bytes(items)
    out = {"id": [], "source": [], "samples": [], "duration_s": [], "error": []}
    for it, data in zip(items, raw):
        samples, err, dur = b"", None, None
        if isinstance(data, Exception):
            err = str(data)
            if err.split(":")[0] not in ERRORS:
                err = f"unreadable_audio: {err}"
        else:
            try:
                decoded = decode_audio(data, max_duration_s=max_duration_s)
                samples, dur = decoded.samples.astype(np.float32).tobytes(), decoded.duration_s
            except AudioRejected as e:
                err = f"{e.reason}: {e.detail}" if getattr(e, "detail", "") else e.reason
            except Exception as e:  # anything else libsndfile or soxr throws
                err = f"unreadable_audio: {type(e).__name__}: {str(e)[:120]}"
        out["id"].append(it["id"])
        out["source"].append(it["source"] + (f"::{it['member']}" if it["kind"] in ("zip", "tar") else ""))
        out["samples"].append(samples)
        out["duration_s"].append(dur)
        out["error"].append(err)
    return out


class TranscribeAndWrite:
    """Actor: transcribe a batch of decoded rows (or of work items, decoded here first) with the shared
    Transcriber and write them as one part file."""

    def __init__(self, model_uri: str, out_dir: str, language: str | None, batch_size: int,
                 tracking_uri: str | None, max_new_tokens: int | None = None, max_duration_s: float | None = None):
        from .transcriber import Transcriber

        self.tr = Transcriber.load(model_uri, tracking_uri=tracking_uri, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens)
        info = self.tr.describe()
        self.model = f"{info['name']}/{info['version']}" if info.get("name") else model_uri
        self.language, self.max_duration_s, self.parts = language, max_duration_s, Path(out_dir) / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: dict) -> dict:
        if "samples" not in batch:  # work items: no separate decode stage (CPU-only, see transcribe_bulk)
            batch = read_and_decode(batch, self.max_duration_s)
        n = len(batch["id"])
        text, lang, secs = [None] * n, [None] * n, [0.0] * n
        # a block in which every row decoded has an all-null error column, which reaches us as float NaNs
        err = [e if isinstance(e, str) else None for e in batch["error"]]
        ok = [i for i in range(n) if err[i] is None]
        if ok:
            audios = [np.frombuffer(batch["samples"][i], np.float32) for i in ok]
            try:
                results = self.tr.transcribe(audios, language=self.language)
            except Exception as e:  # keep the rows, say why
                results = None
                for i in ok:
                    err[i] = f"transcription_failed: {type(e).__name__}: {str(e)[:120]}"
            for i, r in zip(ok, results or []):
                text[i], lang[i], secs[i] = r.text, r.language, r.seconds
        rows = {"id": list(batch["id"]), "source": list(batch["source"]), "text": text, "language": lang,
                "duration_s": [None if d is None or d != d else float(d) for d in batch["duration_s"]],
                "error": err, "seconds": secs, "model": [self.model] * n}
        table = pa.table(rows, schema=OUTPUT_SCHEMA)
        name = f"part-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, self.parts / f".{name}.tmp")
        os.replace(self.parts / f".{name}.tmp", self.parts / name)  # a part is there whole or not at all
        return {"id": rows["id"], "error": err}


# --- the driver ---------------------------------------------------------------------------------------------

def done_ids(out_dir: str) -> set[str]:
    parts = sorted((Path(out_dir) / "parts").glob("part-*.parquet"))
    return {i for p in parts for i in pq.read_table(p, columns=["id"])["id"].to_pylist()}


def finalize(out_dir: str, total_inputs: int) -> dict:
    """Merge the parts into transcripts.parquet/.jsonl (one row per id, sorted) and write summary.json."""
    parts = sorted((Path(out_dir) / "parts").glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else OUTPUT_SCHEMA.empty_table()
    rows = {r["id"]: r for r in table.to_pylist()}  # an id written twice (a retried task) keeps one row
    ordered = [rows[k] for k in sorted(rows)]
    final = pa.Table.from_pylist(ordered, schema=OUTPUT_SCHEMA)
    pq.write_table(final, Path(out_dir) / "transcripts.parquet")
    with open(Path(out_dir) / "transcripts.jsonl", "w", encoding="utf-8") as f:
        for r in ordered:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    errors: dict[str, int] = {}
    for r in ordered:
        if r["error"]:
            key = r["error"].split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    audio_s = sum(r["duration_s"] or 0 for r in ordered if not r["error"])
    summary = {"inputs": total_inputs, "outputs": len(ordered), "transcribed": len(ordered) - sum(errors.values()),
               "errors": errors, "audio_hours": audio_s / 3600,
               "compute_seconds": sum(r["seconds"] or 0 for r in ordered)}
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def transcribe_bulk(model_uri: str, inputs: list[str], out_dir: str, opts: BulkOptions = BulkOptions()) -> dict:
    """Run (or finish) a bulk transcription; returns the summary (also OUT/summary.json)."""
    import ray

    from ..runtime import init_ray

    if opts.language:
        from .transcriber import language_name

        language_name(opts.language)  # a bad language fails here, before Ray starts
    from .source import resolve_model

    resolve_model(model_uri, opts.tracking_uri)  # a bad model URI fails here too
    items = list_inputs(inputs, opts.split)
    items.sort(key=lambda r: r["id"])
    if opts.limit is not None:
        items = items[: opts.limit]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    done = done_ids(out_dir)
    todo = [r for r in items if r["id"] not in done]
    print(f"bulk transcription: {len(items)} inputs, {len(items) - len(todo)} already done, {len(todo)} to do")
    t0 = time.time()
    if todo:
        started = init_ray()
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.op_resource_reservation_enabled = False  # see data/prepare.py: small nodes run one task otherwise
            gpus = int(ray.cluster_resources().get("GPU", 0))
            actors = opts.actors or max(1, gpus)
            res = {"num_gpus": 1} if gpus else {"num_cpus": 1}
            ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // 32, 200)))
            if gpus:  # decode in CPU tasks beside the GPU actors, so that the GPUs do not wait for it
                ds = ds.map_batches(read_and_decode, fn_kwargs={"max_duration_s": opts.max_duration_s},
                                    batch_size=32, num_cpus=0.5)
            # Without a GPU the actors decode their own batches: decode tasks would take the cores the actors
            # compute on, and with as many 1-CPU actors as CPUs they could never be scheduled (the job hung).
            ds = ds.map_batches(TranscribeAndWrite, fn_constructor_args=(model_uri, out_dir, opts.language,
                                                                         opts.batch_size, opts.tracking_uri,
                                                                         opts.max_new_tokens, opts.max_duration_s),
                                batch_size=max(opts.batch_size, 32), compute=ray.data.ActorPoolStrategy(size=actors),
                                **res)
            for _ in ds.iter_batches(batch_size=None):
                pass
        finally:
            if started:
                ray.shutdown()
    summary = finalize(out_dir, len(items))
    summary["wall_seconds"] = time.time() - t0
    missing = {r["id"] for r in items} - done_ids(out_dir)
    if missing:  # cannot happen unless a part was lost; say so loudly rather than silently
        raise RuntimeError(f"{len(missing)} inputs have no output row, e.g. {sorted(missing)[:3]}")
    return summary
