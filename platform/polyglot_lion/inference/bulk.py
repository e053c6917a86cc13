"""Bulk transcription of archives with Ray Data: every input gets exactly one output row, and a killed job
loses nothing.

    list inputs (driver: folders, .tar/.tar.gz/.zip, JSONL manifests, a store split; local or in a bucket)
      -> drop ids already in OUT/parts (resume; with retry_errors also those whose last row is an error)
      -> read + decode to 16 kHz, one input at a time, bounded    error: unreadable_audio, not_a_regular_file, ...
      -> transcribe (actor pool: one GPU per actor, or CPU actors) and write OUT/parts/part-*.parquet
      -> OUT/transcripts.parquet + OUT/transcripts.jsonl + OUT/summary.json (the latest row of every id, sorted)

Output columns: id, source, text, language, duration_s, error (null when it worked, the reason otherwise),
seconds (compute time), model.

Inputs and OUT may be bucket locations (``s3://bucket/prefix``): every part is one object written whole, and resume
lists the parts in the bucket, so exactly-once holds there too. An archive in a bucket is downloaded to a temporary
file by the task that reads it (tarfile and zipfile need a local file).

Bounds: only regular files are read (a FIFO, a device such as /dev/zero, a socket, a tar symlink or hard link get
a row ``not_a_regular_file``; a folder's symlink leading outside the folder gets ``outside_input_root``); a file
or archive member is read with a cap on its size (``max_input_mb``, never read whole first); a header asking the
decoder for more than DecodeLimits allow is refused before decoding (``over_decode_limits``); a batch yields its
decoded samples in pieces of at most ``max_batch_mb``, so a batch of long recordings is never all in memory.
Archives are read through the one bounded member reader, ``data.archives``.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.archives import MemberError, archive_kind, iter_members, list_members
from ..data.audio import AudioRejected, DecodeLimits, decode_audio, without_object_reprs
from ..data.store import list_partitions, write_shard
from ..runtime import init_ray
from ..storage import Location, check_location, resolve
from .source import resolve_model
from .transcriber import Transcriber, language_name

OUTPUT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                           ("language", pa.string()), ("duration_s", pa.float64()), ("error", pa.string()),
                           ("seconds", pa.float64()), ("model", pa.string())])
ERRORS = {
    "unreadable_audio": "not audio, an unsupported format, or corrupt",
    "truncated_audio": "the file ends before its header says it does",
    "empty_audio": "no samples (0 bytes or 0 frames)",
    "silent_audio": "every sample is zero",
    "too_long": "longer than --max-duration",
    "over_decode_limits": "its header asks for more channels, a higher rate or more decoded bytes than allowed",
    "missing_audio": "a manifest names a file that does not exist",
    "malformed_manifest": "a manifest line that is not JSON or has no audio path",
    "not_a_regular_file": "a FIFO, device, socket, directory or an archive's symlink/hard link: never read",
    "outside_input_root": "a symlink in an input folder that leads outside it: never followed",
    "file_too_large": "a file above --max-input-mb",
    "member_too_large": "an archive member above --max-input-mb (its size is not trusted: the read is capped)",
    "unreadable_member": "an archive member (or the archive) that could not be read",
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
    actor_resources: dict | None = None  # custom Ray resources each actor asks for, e.g. {"node_b": 1} pins them
    split: str = "test"  # for a store input
    tracking_uri: str | None = None
    retry_errors: bool = False  # run again the inputs whose last row is an error; the new row replaces it
    max_input_mb: float = 512.0  # largest file or archive member read (bytes as stored)
    max_decoded_mb: float = 512.0  # DecodeLimits.max_decoded_mb: one input's samples at its own rate and channels
    max_batch_mb: float = 1024.0  # decoded 16 kHz samples a batch holds at once before it is passed on

    def check(self) -> None:
        """All problems in one ValueError, naming the option and the value."""
        problems = [f"{n} must be > 0 (is {getattr(self, n)})"
                    for n in ("max_input_mb", "max_decoded_mb", "max_batch_mb") if not getattr(self, n) > 0]
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (is {self.batch_size})")
        if self.max_duration_s is not None and not self.max_duration_s > 0:
            problems.append(f"max_duration_s must be > 0 or None (is {self.max_duration_s})")
        if problems:
            raise ValueError("bulk options: " + "; ".join(problems))


def _error_item(item_id: str, source: str, reason: str, detail: str) -> dict:
    return {"id": item_id, "source": source, "kind": "error", "path": "", "member": f"{reason}: {detail}"[:300],
            "nth": 0}


def _archive_members(loc: Location, prefix: str) -> list[dict]:
    """One work item per member (directories aside), links and devices included: they get their row. ``nth``
    tells apart members of the same name (the k-th of that name, in archive order)."""
    try:
        with loc.local_copy() as local:
            members = list_members(local)
    except MemberError as e:
        return [_error_item(prefix, str(loc), e.reason, e.detail)]
    kind, seen, rows = archive_kind(loc.name), {}, []
    for m in members:
        nth = seen.get(m.name, 0)
        seen[m.name] = nth + 1
        rows.append({"id": f"{prefix}/{m.name}", "source": str(loc), "kind": kind, "path": str(loc),
                     "member": m.name, "nth": nth})
    return rows


def _manifest_rows(loc: Location, prefix: str) -> list[dict]:
    rows, base = [], loc.parent
    for n, line in enumerate(loc.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            audio = rec.get("audio") or rec.get("audio_filepath") or rec.get("path")
            if not isinstance(audio, str) or not audio:
                raise ValueError("no audio/audio_filepath/path field")
        except (ValueError, AttributeError) as e:
            rows.append(_error_item(f"{prefix}:{n}", f"{loc}:{n}", "malformed_manifest",
                                    f"line {n}: {str(e)[:120]}"))
            continue
        full = str(base.locate(audio))  # relative to the manifest's folder, in its bucket if it is in one
        rows.append({"id": str(rec.get("id") or f"{prefix}/{audio}"), "source": full, "kind": "file",
                     "path": full, "member": "", "nth": 0})
    return rows


def _store_rows(store: Location, split: str) -> list[dict]:

    parts = list_partitions(store, split)
    if not parts:
        raise FileNotFoundError(f"store {str(store)!r} has no split {split!r}")
    rows = []
    for p in parts:
        for shard in p.shards():
            f = str(shard)
            for i in pq.read_table(shard.path, columns=["id"], filesystem=shard.fs)["id"].to_pylist():
                rows.append({"id": i, "source": f, "kind": "store", "path": f, "member": i, "nth": 0})
    return rows


def _folder_rows(root: Path) -> list[dict]:
    """Everything in a folder tree that is not a directory, sorted: files (regular or not: reading decides), and
    symlinks, which are followed only when they stay inside the folder."""
    real_root = root.resolve()
    found: list[tuple[Path, bool]] = []  # (path, is a symlinked directory)
    for d, dirs, files in os.walk(root, followlinks=False):
        found += [(Path(d) / n, False) for n in files]
        found += [(Path(d) / n, True) for n in dirs if os.path.islink(os.path.join(d, n))]
    rows = []
    for f, is_dir_link in sorted(found):
        rel = f"{root.name}/{f.relative_to(root)}"
        if f.is_symlink():
            target = f.resolve()
            if not target.is_relative_to(real_root):
                rows.append(_error_item(rel, str(f), "outside_input_root", f"{f} -> {target}"))
                continue
            if is_dir_link:  # its files are listed under their own path
                continue
        if archive_kind(f.name) and f.is_file():
            rows += _archive_members(resolve(f), rel)
        else:
            rows.append({"id": rel, "source": str(f), "kind": "file", "path": str(f), "member": "", "nth": 0})
    return rows


def _bucket_folder_rows(root: Location) -> list[dict]:
    """Every object under a bucket prefix, sorted (a bucket has no symlinks, FIFOs or devices to guard against)."""
    rows = []
    for f in root.files(recursive=True):
        rel = f"{root.name}/{f.path[len(root.path) + 1:]}"
        if archive_kind(f.name):
            rows += _archive_members(f, rel)
        else:
            rows.append({"id": rel, "source": str(f), "kind": "file", "path": str(f), "member": "", "nth": 0})
    return rows


def list_inputs(paths: list[str], split: str = "test") -> list[dict]:
    """Every input as a work item {id, source, kind, path, member, nth}; ids are stable across runs. Archives
    inside folders are opened too. Raises FileNotFoundError for a path that does not exist."""
    rows: list[dict] = []
    for path in paths:
        loc = resolve(path)
        if not loc.exists():
            raise FileNotFoundError(f"input {path!r} does not exist (give a folder, .tar/.tar.gz/.zip, "
                                    f".jsonl manifest or a store folder; local or in a bucket)")
        if loc.is_dir() and loc.join("data").is_dir():
            rows += _store_rows(loc, split)
        elif loc.is_dir():  # symlinks (and their escapes) exist only on a local disk
            rows += _folder_rows(Path(path)) if loc.is_local else _bucket_folder_rows(loc)
        elif archive_kind(loc.name) and loc.is_file():
            rows += _archive_members(loc, loc.name)
        elif loc.name.endswith(".jsonl") and loc.is_file():
            rows += _manifest_rows(loc, loc.name)
        else:
            rows.append({"id": loc.name, "source": str(loc), "kind": "file", "path": str(loc), "member": "",
                         "nth": 0})
    seen: dict[str, int] = {}
    for r in rows:  # ids must be unique for resume to be exact: number repeats
        n = seen.get(r["id"], 0)
        seen[r["id"]] = n + 1
        if n:
            r["id"] = f"{r['id']}#{n}"
    return rows


# --- Ray Data stages ----------------------------------------------------------------------------------------

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most ``max_bytes``; raises ValueError('reason: detail') otherwise. Opened
    non-blocking and checked on the open descriptor, so a FIFO never blocks and a device is never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValueError(f"missing_audio: {path}") from None
    except OSError as e:
        raise ValueError(f"unreadable_audio: {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not_a_regular_file: {path} is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a file')}")
        if st.st_size > max_bytes:
            raise ValueError(f"file_too_large: {path}: {st.st_size} bytes > {max_bytes} (--max-input-mb)")
        # read what fstat says plus one byte (a read of max_bytes + 1 allocates that much for every file), then
        # on, still bounded, if the file grew
        data = f.read(st.st_size + 1)
        if len(data) > st.st_size:
            data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:  # it grew while we read
        raise ValueError(f"file_too_large: {path}: more than {max_bytes} bytes (--max-input-mb)")
    return data


def read_object(loc: Location, max_bytes: int) -> bytes:
    """The bytes of an object in a bucket, at most ``max_bytes``; raises ValueError('reason: detail') otherwise."""
    try:
        size = loc.size()
        if size > max_bytes:
            raise ValueError(f"file_too_large: {loc}: {size} bytes > {max_bytes} (--max-input-mb)")
        with loc.fs.open_input_stream(loc.path) as f:
            data = f.read(size + 1)
            if len(data) > size:  # replaced by a larger object since: read on, still bounded
                data += f.read(max_bytes + 1 - len(data))
    except FileNotFoundError:
        raise ValueError(f"missing_audio: {loc}") from None
    except OSError as e:
        raise ValueError(f"unreadable_audio: {loc}: {str(e)[:120]}") from None
    if len(data) > max_bytes:
        raise ValueError(f"file_too_large: {loc}: more than {max_bytes} bytes (--max-input-mb)")
    return data


def _read_input(path: str, max_bytes: int, inputs: list[Location]) -> bytes:
    loc = resolve(path, like=inputs)
    # a local path may be a FIFO or a device, which must never be read as a file; a bucket holds only objects
    return read_regular_file(loc.path, max_bytes) if loc.is_local else read_object(loc, max_bytes)


def _iter_raw(items: list[dict], max_bytes: int,
              inputs: list[Location] = ()) -> Iterator[tuple[int, bytes | Exception]]:
    """(index, bytes or the error) for every item, one at a time: files in order, then each archive in one pass
    (members as they come), then store files. Nothing is held beyond the item being yielded. ``inputs``: the
    locations listed on the driver, whose filesystems (endpoint, keys) paths in a bucket are read with."""
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        if it["kind"] == "file":
            try:
                yield i, _read_input(it["path"], max_bytes, inputs)
            except ValueError as e:
                yield i, e
        elif it["kind"] == "error":
            yield i, ValueError(it["member"])
        else:
            by_source.setdefault((it["kind"], it["path"]), []).append(i)
    for (kind, path), idx in by_source.items():
        pending = set(idx)
        if kind == "store":
            try:
                shard = resolve(path, like=inputs)
                table = pq.read_table(shard.path, columns=["id", "audio"], filesystem=shard.fs)
                audio = dict(zip(table["id"].to_pylist(), table["audio"].to_pylist()))
                for i in idx:
                    pending.discard(i)
                    yield i, audio[items[i]["member"]]
            except Exception as e:
                for i in sorted(pending):
                    yield i, ValueError(f"unreadable_member: {type(e).__name__}: {str(e)[:120]}")
            continue
        want = {(items[i]["member"], int(items[i].get("nth") or 0)): i for i in idx}
        count: dict[str, int] = {}
        try:
            with resolve(path, like=inputs).local_copy() as local:
                for name, got in iter_members(local, {m for m, _ in want}, max_bytes):
                    k = count.get(name, 0)
                    count[name] = k + 1
                    i = want.get((name, k))
                    if i is None:
                        continue
                    pending.discard(i)
                    yield i, ValueError(f"{got.reason}: {got.detail}") if isinstance(got, MemberError) else got
        except (MemberError, OSError) as e:  # a corrupt archive (or a failed download): the members not read yet
            detail = e.detail if isinstance(e, MemberError) else f"{path}: {str(e)[:120]}"  # are errors, the job
            for i in sorted(pending):  # goes on
                yield i, ValueError(f"unreadable_member: {detail}")
            continue
        for i in sorted(pending):  # listed before, gone now (the archive changed in between)
            yield i, ValueError(f"unreadable_member: {items[i]['member']} is no longer in {path}")


def _empty_columns() -> dict:
    return {"id": [], "source": [], "samples": [], "duration_s": [], "error": []}


def read_and_decode(batch: dict, max_duration_s: float | None = None, max_input_mb: float = 512.0,
                    max_decoded_mb: float = 512.0, max_batch_mb: float = 1024.0,
                    inputs: list[Location] = ()) -> Iterator[dict]:
    """Work items -> {id, source, samples (float32 bytes), duration_s, error}, yielded in pieces of at most
    ``max_batch_mb`` of samples (Ray Data takes a generator). Never raises for one item; one row per item."""

    limits = DecodeLimits(max_decoded_mb=max_decoded_mb)
    items = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
    out, held = _empty_columns(), 0
    for i, data in _iter_raw(items, int(max_input_mb * 2**20), inputs):
        it = items[i]
        samples, err, dur = b"", None, None
        if isinstance(data, Exception):
            err = str(data)
            if err.split(":")[0] not in ERRORS:
                err = f"unreadable_audio: {err}"
        else:
            try:
                decoded = decode_audio(data, max_duration_s=max_duration_s, limits=limits)
                samples, dur = decoded.samples.astype(np.float32).tobytes(), decoded.duration_s
            except AudioRejected as e:
                err = f"{e.reason}: {e.detail}" if getattr(e, "detail", "") else e.reason
                if e.reason == "over_decode_limits":
                    err += " (--max-decoded-mb; at most 8 channels and 192 kHz)"
            except Exception as e:  # anything else libsndfile or soxr throws
                err = f"unreadable_audio: {type(e).__name__}: {without_object_reprs(str(e))[:120]}"
        del data
        out["id"].append(it["id"])
        out["source"].append(it["source"] + (f"::{it['member']}" if it["kind"] in ("zip", "tar") else ""))
        out["samples"].append(samples)
        out["duration_s"].append(dur)
        out["error"].append(err)
        held += len(samples)
        if held >= max_batch_mb * 2**20:
            yield out
            out, held = _empty_columns(), 0
    if out["id"]:
        yield out


class TranscribeAndWrite:
    """Actor: transcribe a batch of decoded rows (or of work items, decoded here first) with the shared
    Transcriber and write them as one part file."""

    def __init__(self, model_uri: str, out_dir: str | Location, language: str | None, batch_size: int,
                 tracking_uri: str | None, max_new_tokens: int | None = None, max_duration_s: float | None = None,
                 decode_kwargs: dict | None = None):

        self.tr = Transcriber.load(model_uri, tracking_uri=tracking_uri, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens)
        info = self.tr.describe()
        self.model = f"{info['name']}/{info['version']}" if info.get("name") else model_uri
        self.language, self.max_duration_s, self.parts = language, max_duration_s, resolve(out_dir).join("parts")
        self.decode_kwargs = decode_kwargs or {}

    def __call__(self, batch: dict) -> dict:
        if "samples" in batch:
            rows = self._transcribe(batch)
        else:  # work items: no separate decode stage (CPU-only, see transcribe_bulk); piece by piece, so at
            # most max_batch_mb of samples are held at once
            pieces = [self._transcribe(d) for d in read_and_decode(batch, self.max_duration_s, **self.decode_kwargs)]
            rows = {k: [v for piece in pieces for v in piece[k]] for k in OUTPUT_SCHEMA.names}
        table = pa.table(rows, schema=OUTPUT_SCHEMA)
        # named by time, so that the parts sort in the order they were written: the latest row of an id wins
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
        write_shard(self.parts.join(name), table)  # a part is there whole or not at all (one object in a bucket)
        return {"id": rows["id"], "error": rows["error"]}

    def _transcribe(self, batch: dict) -> dict:
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
        return {"id": list(batch["id"]), "source": list(batch["source"]), "text": text, "language": lang,
                "duration_s": [None if d is None or d != d else float(d) for d in batch["duration_s"]],
                "error": err, "seconds": secs, "model": [self.model] * n}


# --- the driver ---------------------------------------------------------------------------------------------

def _parts(out_dir: str | Location) -> list[Location]:
    """The part files in the order they were written (their names start with the time; older runs' names do not,
    so the file time orders first), listed from OUT/parts (a folder or a bucket prefix)."""
    found = [(loc, info) for loc, info in resolve(out_dir).join("parts").file_infos(".parquet")
             if loc.name.startswith("part-")]
    return [loc for loc, _ in sorted(found, key=lambda li: (li[1].mtime_ns or 0, li[0].name))]


def done_ids(out_dir: str | Location, retry_errors: bool = False) -> set[str]:
    """Ids with a row; with ``retry_errors``, only those whose latest row has no error."""
    last: dict[str, str | None] = {}
    for p in _parts(out_dir):
        t = pq.read_table(p.path, columns=["id", "error"], filesystem=p.fs)
        last.update(zip(t["id"].to_pylist(), t["error"].to_pylist()))
    return {i for i, err in last.items() if not (retry_errors and err)}


def finalize(out_dir: str | Location, total_inputs: int) -> dict:
    """Merge the parts into transcripts.parquet/.jsonl (the latest row of every id, sorted) and write
    summary.json, each file whole."""
    out = resolve(out_dir)
    parts = _parts(out)
    table = (pa.concat_tables([pq.read_table(p.path, filesystem=p.fs) for p in parts]) if parts
             else OUTPUT_SCHEMA.empty_table())
    rows = {r["id"]: r for r in table.to_pylist()}  # written twice (a retried task, --retry-errors): the latest
    ordered = [rows[k] for k in sorted(rows)]
    final = pa.Table.from_pylist(ordered, schema=OUTPUT_SCHEMA)
    write_shard(out.join("transcripts.parquet"), final)
    out.join("transcripts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    errors: dict[str, int] = {}
    for r in ordered:
        if r["error"]:
            key = r["error"].split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    audio_s = sum(r["duration_s"] or 0 for r in ordered if not r["error"])
    summary = {"inputs": total_inputs, "outputs": len(ordered), "transcribed": len(ordered) - sum(errors.values()),
               "errors": errors, "audio_hours": audio_s / 3600,
               "compute_seconds": sum(r["seconds"] or 0 for r in ordered)}
    out.join("summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def transcribe_bulk(model_uri: str, inputs: list[str], out_dir: str, opts: BulkOptions = BulkOptions()) -> dict:
    """Run (or finish) a bulk transcription; returns the summary (also OUT/summary.json). Inputs and ``out_dir`` may
    be local or bucket locations."""
    import ray


    opts.check()
    # a missing or denied bucket fails here, naming the location, before anything else (and before Ray starts)
    out = check_location(out_dir, write=True, what="--out")
    roots = [check_location(p, write=False, what="--input") for p in inputs]
    if opts.language:

        language_name(opts.language)  # a bad language fails here, before Ray starts

    resolve_model(model_uri, opts.tracking_uri)  # a bad model URI fails here too
    items = list_inputs(inputs, opts.split)
    items.sort(key=lambda r: r["id"])
    if opts.limit is not None:
        items = items[: opts.limit]
    have = done_ids(out)
    done = done_ids(out, retry_errors=True) if opts.retry_errors else have
    todo = [r for r in items if r["id"] not in done]
    retried = sum(r["id"] in have for r in todo)
    print(f"bulk transcription: {len(items)} inputs, {len(items) - len(todo)} already done, {len(todo)} to do"
          + (f" ({retried} of them errors retried)" if retried else ""))
    decode_kwargs = {"max_input_mb": opts.max_input_mb, "max_decoded_mb": opts.max_decoded_mb,
                     "max_batch_mb": opts.max_batch_mb, "inputs": roots}
    t0 = time.time()
    if todo:
        started = init_ray()
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.op_resource_reservation_enabled = False  # see data/prepare.py: small nodes run one task otherwise
            gpus = int(ray.cluster_resources().get("GPU", 0))
            actors = opts.actors or max(1, gpus)
            res = {"num_gpus": 1} if gpus else {"num_cpus": 1}
            if opts.actor_resources:
                res["resources"] = dict(opts.actor_resources)
            ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // 32, 200)))
            if gpus:  # decode in CPU tasks beside the GPU actors, so that the GPUs do not wait for it
                ds = ds.map_batches(read_and_decode, fn_kwargs={"max_duration_s": opts.max_duration_s,
                                                                 **decode_kwargs},
                                    batch_size=32, num_cpus=0.5)
            # Without a GPU the actors decode their own batches: decode tasks would take the cores the actors
            # compute on, and with as many 1-CPU actors as CPUs they could never be scheduled (the job hung).
            ds = ds.map_batches(TranscribeAndWrite, fn_constructor_args=(model_uri, out, opts.language,
                                                                         opts.batch_size, opts.tracking_uri,
                                                                         opts.max_new_tokens, opts.max_duration_s,
                                                                         decode_kwargs),
                                batch_size=max(opts.batch_size, 32), compute=ray.data.ActorPoolStrategy(size=actors),
                                **res)
            for _ in ds.iter_batches(batch_size=None):
                pass
        finally:
            if started:
                ray.shutdown()
    summary = finalize(out, len(items))
    summary["wall_seconds"] = time.time() - t0
    missing = {r["id"] for r in items} - done_ids(out)
    if missing:  # cannot happen unless a part was lost; say so loudly rather than silently
        raise RuntimeError(f"{len(missing)} inputs have no output row, e.g. {sorted(missing)[:3]}")
    return summary
