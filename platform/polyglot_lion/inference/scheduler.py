"""Continuous batching: one decode loop with a fixed number of slots, requests joining and leaving between steps.

    batcher = ContinuousBatcher(Transcriber.load(uri), slots=16, max_queue=64)   # the static engine
    batcher.start()                                      # the decode loop, in a thread of its own
    future = batcher.submit(samples_16k, language=None)  # Busy when the queue is full: the caller answers 503
    result = future.result()                             # a Transcription, as Transcriber.transcribe gives
    batcher.close()                                      # or stop(): finish what was submitted, or fail it

Why: batching whole requests (``@serve.batch``) keeps every short clip of a batch waiting until its longest
clip has its last token. Here each chunk of a request (``split_points``, as ``transcribe`` cuts) is a sequence
of its own: it is prefilled into a free slot between two decode steps (``DecodeEngine.prefill`` on that row
alone, while the others keep their caches) and answered as soon as its own sequence ends, when its slot takes
the next one. Each sequence has its own budget (``max_new_tokens``, else by its own duration) and the same
EOS and loop rules as the batch path; decoding a clip here gives the token ids it gets alone in
``Transcriber.generate_ids`` (a test holds them equal).

The loop reads the device every ``check_every`` steps (which rows finished, and their tokens); new sequences
are admitted at those points. ``submit`` runs the processor (features and prompt) in the caller's thread, so
the loop thread only runs the model. Back pressure: at most ``max_queue`` sequences wait for a slot; ``submit``
raises ``Busy`` beyond that (with every slot taken as well, since the loop moves waiting sequences to free
slots); a request with more chunks than ``max_queue`` plus the slots could ever hold is taken when nothing
waits, so it is not refused forever. A request whose future is cancelled (its client went away) leaves its
slots at the next check. ``seconds`` of a result is its wait plus decode time, from ``submit`` to the answer;
its ``timings`` hold ``wait_s`` (until its first chunk had a slot) and ``rows`` (the most rows that decoded
beside it, itself included).
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..data.schema import LANGUAGES
from .engine import cache_bucket
from .transcriber import _NAME_TO_CODE, RATE, join_chunks, language_name, max_new_tokens_for, split_points


class Busy(RuntimeError):
    """Every slot is taken and the queue is full: try again later."""


@dataclass
class _Request:
    future: Future
    parts: list
    duration_s: float
    forced_code: str | None
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None  # when its first chunk got a slot
    rows: int = 0  # the most rows running beside its chunks, itself included


@dataclass
class _Sequence:
    request: _Request
    index: int  # chunk index within the request
    inputs: dict  # the processor's batch of one (CPU tensors)
    budget: int


class ContinuousBatcher:
    """A decode loop of ``slots`` rows over a ``Transcriber``'s static engine (see the module docstring).
    ``on_round``: called from the loop thread with the number of rows running in each round of ``check_every``
    steps (the Serve app counts them)."""

    def __init__(self, transcriber, slots: int = 16, max_queue: int = 64, check_every: int | None = None,
                 on_round: Callable[[int], None] | None = None):
        problems = []
        if transcriber.engine is None:
            problems.append(f"the transcriber's engine must be 'static' (is {transcriber.engine_name!r})")
        if slots < 1:
            problems.append(f"slots must be >= 1 (is {slots})")
        if max_queue < 0:
            problems.append(f"max_queue must be >= 0 (is {max_queue})")
        if check_every is not None and check_every < 1:
            problems.append(f"check_every must be >= 1 (is {check_every})")
        if problems:
            raise ValueError("ContinuousBatcher: " + "; ".join(problems))
        self.tr, self.engine = transcriber, transcriber.engine
        self.slots, self.max_queue, self.on_round = slots, max_queue, on_round
        self.check_every = check_every or self.engine.check_every
        # every slot holds the longest chunk's prompt with the longest forced-language suffix, and its budget
        longest = np.zeros(int(transcriber.chunk_s * RATE), np.float32)
        prompt = transcriber.prepare([longest], None)["input_ids"].shape[1]
        tok = transcriber.processor.tokenizer
        prompt += max(len(tok(f"language {name}<asr_text>", add_special_tokens=False)["input_ids"])
                      for name in LANGUAGES.values())
        self.state = self.engine.new_state(slots, cache_bucket(prompt + self._budget(longest)))
        self._queue: collections.deque[_Sequence] = collections.deque()
        self._running: list[_Sequence | None] = [None] * slots
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._closing = False  # close(): end once nothing is queued or running
        self._ended = False  # the loop ran and returned: nothing submitted now would be decoded
        self._done = threading.Event()  # set when the loop thread returns
        self.warm_up_s: float | None = None

    def _budget(self, samples: np.ndarray) -> int:
        return self.tr.max_new_tokens or max_new_tokens_for(len(samples) / RATE)

    # --- the caller's side ----------------------------------------------------------------------------------
    def submit(self, samples: np.ndarray, language: str | None = None) -> Future:
        """Queue one clip (16 kHz mono float32); the future resolves to its Transcription. ``Busy`` when the
        queue cannot take its chunks; ValueError for an unsupported language; RuntimeError once the loop has
        ended. The processor runs here, in the caller's thread."""
        forced = language_name(language) if language else None
        a = np.asarray(samples, np.float32).reshape(-1)
        pieces = [a[s:e] if e > s else np.zeros(160, np.float32) for s, e in split_points(a, self.tr.chunk_s)]
        with self._lock:
            self._check_room(len(pieces))  # before the processor's work, which is wasted on a refusal
        request = _Request(Future(), [None] * len(pieces), len(a) / RATE,
                           _NAME_TO_CODE[forced.lower()] if forced else None)
        sequences = [_Sequence(request, j, self.tr.prepare([p], forced), self._budget(p))
                     for j, p in enumerate(pieces)]
        with self._lock:
            self._check_room(len(pieces))  # again: others may have queued meanwhile
            self._queue.extend(sequences)
            self._lock.notify()
        return request.future

    def _check_room(self, n: int) -> None:
        """Under the lock: RuntimeError when the loop has ended, Busy when ``n`` more sequences do not fit."""
        if self._ended:
            raise RuntimeError("the decode loop was stopped")
        free = sum(s is None for s in self._running)  # queued sequences take these at the next admission
        fits = len(self._queue) + n <= self.max_queue + free
        # a request that could never fit is taken when nothing waits (it then waits alone)
        if not fits and (self._queue or n <= self.max_queue + self.slots):
            taken = self.slots - free + min(free, len(self._queue))  # queued sequences about to take free slots
            raise Busy(f"{taken} of {self.slots} slots taken and {max(0, len(self._queue) - free)} sequences "
                       f"waiting (at most {self.max_queue} wait)")

    def start(self, after: "ContinuousBatcher | None" = None) -> "ContinuousBatcher":
        """Run the decode loop in a daemon thread. Its first round of steps runs on the free slots (garbage in,
        nothing kept), so the first request does not pay for compiling (on CUDA, recording) the step of this
        state's shape, in the thread that runs it (``warm_up_s`` says how long it took). ``after``: a batcher of
        the same engine that was closed; this loop starts once that one has ended (one loop per engine at a
        time), and takes submissions meanwhile."""
        if self._thread is None:
            self._stop = self._closing = self._ended = False
            self._done.clear()
            self._thread = threading.Thread(target=self._loop, args=(after,), name="decode-loop", daemon=True)
            self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """The loop thread runs (started, not stopped, not failed)."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Take no more work once what is queued and running is answered, then end the loop; returns at once
        (a replaced model's batcher drains this way while the new one answers)."""
        with self._lock:
            self._closing = True
            self._lock.notify()

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the loop after its current steps; requests still queued or running get a RuntimeError."""
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            self._ended = True
            pending = [s.request for s in list(self._queue) + [r for r in self._running if r is not None]]
            self._queue.clear()
            self._running = [None] * self.slots
        self._done.set()
        for request in pending:
            self._fail(request, RuntimeError("the decode loop was stopped"))

    def stats(self) -> dict:
        with self._lock:
            return {"slots": self.slots, "running": sum(s is not None for s in self._running),
                    "queued": len(self._queue), "max_queue": self.max_queue}

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self, after: "ContinuousBatcher | None") -> None:
        try:
            if after is not None:
                after._done.wait()
            with torch.inference_mode():  # the state is made of inference tensors
                t0 = time.perf_counter()
                for _ in range(self.check_every):
                    self.engine.step(self.state)  # every row is finished: pads written, nothing advances
                self.state.finished.tolist()  # waits for the device
                self.warm_up_s = time.perf_counter() - t0
                self._decode()
        except BaseException as e:  # a bug in the loop itself: fail everything it holds, then say it (alive False)
            with self._lock:
                self._ended = True
                pending = [s.request for s in list(self._queue) + [r for r in self._running if r is not None]]
                self._queue.clear()
                self._running = [None] * self.slots
            for request in pending:
                self._fail(request, RuntimeError(f"the decode loop failed: {type(e).__name__}: {e}"))
            raise
        finally:
            self._done.set()

    def _decode(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._queue and all(s is None for s in self._running):
                    if self._closing:
                        self._ended = True
                        return
                    self._lock.wait()
                if self._stop:
                    self._ended = True
                    return
                admit = []
                for row, seq in enumerate(self._running):
                    while seq is None and self._queue:
                        seq = self._queue.popleft()
                        if seq.request.future.done():  # cancelled, or failed by another of its chunks
                            seq = None
                            continue
                        self._running[row] = seq
                        admit.append(row)
                running = [s for s in self._running if s is not None]
            now = time.perf_counter()
            for seq in running:
                r = seq.request
                r.rows = max(r.rows, len(running))
                if r.started is None:
                    r.started = now
            if self.on_round is not None:
                self.on_round(len(running))
            for row in admit:
                self._prefill(row)
            try:
                for _ in range(self.check_every):
                    self.engine.step(self.state)
            except Exception as e:  # a broken step fails what is running, not the loop
                self._fail_running(e)
                continue
            self._collect()

    def _prefill(self, row: int) -> None:
        seq = self._running[row]
        try:
            self.engine.prefill(self.state, slice(row, row + 1), seq.inputs, seq.budget)
            seq.inputs = None  # the features are in the cache now
        except Exception as e:
            self._running[row] = None
            self.state.finished[row] = True
            self._fail(seq.request, e)

    def _collect(self) -> None:
        """One read of the device: the finished rows' tokens go to their requests, their slots free up."""
        finished = self.state.finished.tolist()
        n_gen = self.state.n_gen.tolist()
        for row, seq in enumerate(self._running):
            if seq is None:
                continue
            request = seq.request
            if not finished[row] and request.future.done():  # its client went away: free the slot now
                self.state.finished[row] = True
            elif not finished[row]:
                continue
            with self._lock:
                self._running[row] = None
            if request.future.done():
                continue
            request.parts[seq.index] = self.tr.decode(self.state.out[row, :n_gen[row]].tolist())
            if all(p is not None for p in request.parts):
                now = time.perf_counter()
                result = join_chunks(request.parts, request.duration_s, now - request.submitted,
                                     request.forced_code, self.tr.repetition_threshold)
                result.timings = {"wait_s": request.started - request.submitted, "rows": request.rows}
                try:
                    request.future.set_result(result)
                except InvalidStateError:  # cancelled since the check above
                    pass

    def _fail(self, request: _Request, error: Exception) -> None:
        try:
            request.future.set_exception(error)
        except InvalidStateError:  # answered already, or cancelled by its caller
            pass

    def _fail_running(self, error: Exception) -> None:
        with self._lock:
            running = [s for s in self._running if s is not None]
            self._running = [None] * self.slots
        self.state.finished.fill_(True)
        for seq in running:
            self._fail(seq.request, error)
