"""The training input: the store streamed through a balance plan, featurised in Ray Data CPU stages, then
bucketed by duration in the worker.

Ray Data (CPU):   store shards -> keep the plan's utterances, with their counts -> decode FLAC -> mel features
                  + token ids (once per utterance and epoch, however often the plan repeats it)
Train worker:     rows (in a deterministic order) -> rows that could not be featurised dropped and counted ->
                  each ``count`` times -> seeded shuffle buffer -> windows of ``bucket_window`` -> duration
                  buckets -> tensors

Everything in the worker is a pure function of the row order and the seed, so a resumed run replays the same
micro-batches.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import sys
import threading

import numpy as np
import pyarrow as pa

from ..data.audio import decode_flac
from ..folders import cached_local_copy
from ..model.loading import load_tokenizer_and_features
from ..model.prompts import Example, PromptEncoder, PromptPieces, bucket_batches, collate

# features: float16 bytes of (n_mels, frames); error: null, or why the row could not be featurised
FEATURE_SCHEMA = pa.schema([("id", pa.string()), ("count", pa.int64()), ("input_ids", pa.list_(pa.int64())),
                            ("labels", pa.list_(pa.int64())), ("features", pa.binary()), ("n_mels", pa.int64()),
                            ("n_frames", pa.int64()), ("duration_s", pa.float64()), ("error", pa.string())])
FEATURE_COLUMNS = FEATURE_SCHEMA.names
#: why ``featurize_rows`` gives up on a row: its audio does not decode / the processor failed on it
SKIP_REASONS = ("unreadable_audio", "featurize_failed")


class Featurize:
    """Ray Data callable class (actor pool): utterance rows -> token ids, labels and mel features (float16 bytes)."""

    def __init__(self, processor_dir: str, mode: str, pieces: PromptPieces | None = None):
        self.encoder = _encoder(processor_dir, mode, pieces)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return featurize_rows(batch, self.encoder)


def featurize_batch(batch: pa.Table, processor_dir: str, mode: str, pieces: PromptPieces | None = None) -> pa.Table:
    """Ray Data function (task pool, ``data.featurize_actors: 0``): as ``Featurize``; the encoder is cached
    per worker process, and Ray reuses task processes across datasets, so consecutive jobs in one session (the
    test suite, an experiment's fine-tunes) pay the imports and the load once, not once per job."""
    return featurize_rows(batch, _encoder(processor_dir, mode, pieces))


def prompt_pieces(processor_dir: str) -> PromptPieces | None:
    """The prompt's pieces for the featurisers, read in the driver from the checkpoint's full processor, so that
    they load only its tokenizer and feature extractor. None for a checkpoint that is not a local folder (a
    bucket, a hub id): the driver would download all of it, weights included, for a few token ids."""
    if not os.path.isdir(processor_dir):
        return None
    from transformers import AutoProcessor  # heavy: only a driver that starts featurisers loads a processor

    return PromptPieces.of(AutoProcessor.from_pretrained(processor_dir))


_ENCODERS: dict[tuple[str, str], PromptEncoder] = {}


def _encoder(processor_dir: str, mode: str, pieces: PromptPieces | None = None) -> PromptEncoder:
    key = (processor_dir, mode)
    if key not in _ENCODERS:
        if len(_ENCODERS) >= 4:  # a long-lived task process serves many jobs: keep the latest few
            _ENCODERS.pop(next(iter(_ENCODERS)))
        # a bucket location (a run's tiny base model): loaded from this node's temporary copy
        folder = cached_local_copy(processor_dir)
        parts = load_tokenizer_and_features(folder) if pieces else None  # None: the classes are not named there
        if parts is None:
            from transformers import AutoProcessor  # heavy: only a featurising process loads a processor

            parts, pieces = AutoProcessor.from_pretrained(folder), None
        _ENCODERS[key] = PromptEncoder(parts, mode, pieces)
    return _ENCODERS[key]


def featurize_rows(batch: pa.Table, encoder: PromptEncoder) -> pa.Table:
    """Utterance rows -> feature rows. A row that cannot be featurised (its audio does not decode, or the
    processor fails on it) does not fail the job: it comes out empty with ``error`` set (``reason: detail``;
    null when it worked), and the trainer drops and counts it (``SkippedRows``)."""
    out = {k: [] for k in FEATURE_COLUMNS}
    for row in batch.to_pylist():
        ex, error = None, None
        try:
            samples = decode_flac(row["audio"])
        except Exception as e:  # noqa: BLE001 - any decoder failure is this row's, not the job's
            error = f"unreadable_audio: {type(e).__name__}: {str(e)[:160]}"
        else:
            try:
                ex = encoder.encode(samples, row["text"], row["language"])
            except Exception as e:  # noqa: BLE001
                error = f"featurize_failed: {type(e).__name__}: {str(e)[:160]}"
        out["id"].append(row["id"])
        out["count"].append(row.get("count", 1))
        out["input_ids"].append(ex.input_ids.tolist() if ex else [])
        out["labels"].append(ex.labels.tolist() if ex else [])
        out["features"].append(ex.features.astype(np.float16).tobytes() if ex else b"")
        out["n_mels"].append(ex.features.shape[0] if ex else 0)
        out["n_frames"].append(ex.n_frames if ex else 0)
        out["duration_s"].append(row["duration_s"])
        out["error"].append(error)
    return pa.table(out, schema=FEATURE_SCHEMA)



class SkippedRows:
    """Drops the feature rows that carry an ``error`` from a stream, counting them by reason (the text before
    the first colon); the first ``name_first`` are named on stderr (the job's log). ``total`` and ``by_reason``
    are what has gone by so far: deterministic for a given row order, so a resumed run that replays a read
    counts the same."""

    def __init__(self, what: str = "training", name_first: int = 5):
        self.what, self.name_first = what, name_first
        self.by_reason: collections.Counter = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def filter(self, rows):
        for row in rows:
            error = row.get("error")
            if not error:
                yield row
                continue
            reason = error.split(":", 1)[0]
            self.by_reason[reason] += 1
            if self.total <= self.name_first:
                print(f"skipped a {self.what} utterance that cannot be featurised: {row['id']}: {error}"
                      + (" (further ones are only counted)" if self.total == self.name_first else ""),
                      file=sys.stderr, flush=True)


def row_to_example(row: dict) -> Example:
    feats = np.frombuffer(row["features"], np.float16).astype(np.float32).reshape(row["n_mels"], -1)
    return Example(np.asarray(row["input_ids"], np.int64), np.asarray(row["labels"], np.int64), feats,
                   int(row["n_frames"]))


def expand_repeats(rows):
    """Each row ``count`` times (default 1), side by side, with its ``repeat`` index: the plan's upsampling,
    made after featurisation (the occurrences share one row's features). Pure."""
    for row in rows:
        for r in range(int(row.get("count", 1))):
            yield {**row, "repeat": r}


_END = object()  # a read's last row has been queued


class ShardReads:
    """The rows of consecutive reads (epochs) of a Ray Train dataset shard, asked for in order.

    Each ``iter_rows()`` of a streaming-split shard starts a new Ray Data execution, and its first rows take
    as long as the featurisers' start-up (new processes import torch, transformers and the processor: ~10 s
    on 2 CPUs). The loop only asks for the next read once its shuffle buffer and bucketing window are empty,
    so that start-up used to stall training at every epoch. With ``ahead_rows`` > 0 a background thread reads
    the shard instead: as soon as one read is drained into the loop's buffers it starts the next one, holding
    at most ``ahead_rows`` rows in its queue, so the restart overlaps training on the rows still buffered.
    The rows and their order are exactly the shard's (a resumed run replays the same batches); an error in the
    pipeline is raised in the loop. ``ahead_rows`` 0: each read is ``shard.iter_rows()``, when asked for.
    """

    def __init__(self, shard, first_read: int, ahead_rows: int):
        self._shard, self._next = shard, first_read
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead_rows))
        self._thread = None
        if ahead_rows > 0:
            self._thread = threading.Thread(target=self._fill, args=(first_read,), name="shard-read-ahead",
                                            daemon=True)  # never keeps a finished worker alive
            self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, read: int) -> None:
        try:
            while not self._stop.is_set():
                for row in self._shard.iter_rows():
                    if not self._put((read, row)):
                        return
                if not self._put((read, _END)):
                    return
                read += 1
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
            self._put((read, e))

    def rows(self, read: int):
        """The rows of read ``read``: the one after the last read asked for (or ``first_read``)."""
        if read != self._next:
            raise ValueError(f"ShardReads: read {read} asked for, but the next read is {self._next} (in order only)")
        self._next += 1
        if self._thread is None:
            yield from self._shard.iter_rows()
            return
        while True:
            r, item = self._queue.get()
            if r < read:  # the rest of a read the loop left unfinished
                continue
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                return
            yield item

    def close(self) -> None:
        """Stop reading ahead (the thread ends at its next row; a read it started is left unfinished)."""
        self._stop.set()


def shuffle_rows(rows, buffer_size: int, seed: int):
    """Mix a stream in a buffer of ``buffer_size`` rows (seeded; 0 or 1 = stream order). Every row comes out once."""
    if buffer_size <= 1:
        yield from rows
        return
    rng = np.random.default_rng(seed)
    buf: list = []
    for row in rows:
        if len(buf) < buffer_size:
            buf.append(row)
            continue
        j = int(rng.integers(buffer_size))
        yield buf[j]
        buf[j] = row
    for j in rng.permutation(len(buf)):
        yield buf[j]


def iter_micro_batches(rows, pad_id: int, seed: int, window: int, max_frames: int, max_batch_size: int,
                       fixed_batch_size: int = 0):
    """Rows -> collated micro-batches. Deterministic for a given row order and seed."""
    buf: list[dict] = []
    chunk = 0

    def flush(items):
        nonlocal chunk
        if fixed_batch_size:
            groups = [list(range(i, min(i + fixed_batch_size, len(items)))) for i in range(0, len(items), fixed_batch_size)]
        else:
            lengths = [len(np.frombuffer(it["features"], np.float16)) // it["n_mels"] for it in items]
            groups = bucket_batches(lengths, max_frames, max_batch_size, seed=seed * 100_003 + chunk, window=len(items))
        chunk += 1
        for g in groups:
            yield collate([row_to_example(items[i]) for i in g], pad_id), len(g)

    for row in rows:
        buf.append(row)
        if len(buf) == window:
            yield from flush(buf)
            buf = []
    if buf:
        yield from flush(buf)


def synced(batches, world: int, group=None):
    """Yield micro-batches while every rank still has one; then drain the rest (dropped for this read): each
    backward pass is a collective when there are several ranks, so all run the same number. The flag is a CPU
    tensor reduced over ``group``, a gloo group (no GPU sync per micro-batch)."""
    # torch only here: this module is imported by every Ray Data task that reads or featurises rows, and a fresh
    # task process would pay seconds for importing torch it never uses
    import torch
    import torch.distributed as dist

    it = iter(batches)
    while True:
        item = next(it, None)
        if world > 1:
            more = torch.tensor([0 if item is None else 1])
            dist.all_reduce(more, op=dist.ReduceOp.MIN, group=group)
            if more.item() == 0:
                for _ in it:  # finish this rank's shard so the streaming split can start the next read
                    pass
                return
        elif item is None:
            return
        yield item


def steps_for_epochs(durations_s: list[float], epochs: float, grad_accum: int, workers: int, window: int,
                     max_frames: int, max_batch_size: int, fixed_batch_size: int = 0, seed: int = 0,
                     chunk_frames: int = 100) -> int:
    """Optimizer steps that ``epochs`` epochs of a plan make (``durations_s``: one per plan row), for
    ``train.epochs``. Each clip counts as its mel frames rounded up to the encoder's chunks (``chunk_frames``,
    1 s), bucketed by ``bucket_batches`` in windows of ``window`` clips as ``iter_micro_batches`` does, in a
    seeded order (the worker's order comes from the store's shards and a shuffle buffer, so its count differs
    by a few micro-batches); the micro-batches are shared by ``workers`` and ``grad_accum`` make a step. Pure."""
    if epochs <= 0 or not durations_s:
        raise ValueError(f"steps_for_epochs: epochs must be > 0 and the plan non-empty (epochs {epochs}, "
                         f"{len(durations_s)} rows)")
    lengths = [max(1, math.ceil(d * 100 / chunk_frames)) * chunk_frames for d in durations_s]
    order = np.random.default_rng(seed).permutation(len(lengths))
    micro = 0
    for start in range(0, len(order), window):
        part = [lengths[i] for i in order[start:start + window]]
        micro += (math.ceil(len(part) / fixed_batch_size) if fixed_batch_size
                  else len(bucket_batches(part, max_frames, max_batch_size, seed=seed, window=len(part))))
    return max(1, math.ceil(epochs * micro / (workers * grad_accum)))
