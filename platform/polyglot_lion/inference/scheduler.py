"""Continuous batching: one decode loop with a fixed number of slots, requests joining and leaving between steps.

    batcher = ContinuousBatcher(Transcriber.load(uri), slots=16, max_queue=64)   # the static engine
    batcher.start()                                      # the decode loop, in a thread of its own
    future = batcher.submit(samples_16k, language=None)  # Busy when the queue is full: the caller answers 503
    result = future.result()                             # a Transcription, as Transcriber.transcribe gives
    batcher.stop()

Why: batching whole requests (``@serve.batch``) keeps every short clip of a batch waiting until its longest
clip has its last token. Here each chunk of a request (``split_points``, as ``transcribe`` cuts) is a sequence
of its own: it is prefilled into a free slot between two decode steps (``DecodeEngine.prefill`` on that row
alone, while the others keep their caches) and answered as soon as its own sequence ends, when its slot takes
the next one. Each sequence has its own budget (``max_new_tokens``, else by its own duration) and the same
EOS and loop rules as the batch path; decoding a clip here gives the token ids it gets alone in
``Transcriber.generate_ids`` (a test holds them equal).

The loop reads the device every ``check_every`` steps (which rows finished, and their tokens); new sequences
are admitted at those points. Back pressure: at most ``max_queue`` sequences wait for a slot; ``submit`` raises
``Busy`` beyond that (with every slot taken as well, since the loop moves waiting sequences to free slots).
``seconds`` of a result is its wait plus decode time, from ``submit`` to the answer.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

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


@dataclass
class _Sequence:
    request: _Request
    index: int  # chunk index within the request
    samples: np.ndarray
    forced: str | None  # language name, when forced


class ContinuousBatcher:
    """A decode loop of ``slots`` rows over a ``Transcriber``'s static engine (see the module docstring)."""

    def __init__(self, transcriber, slots: int = 16, max_queue: int = 64, check_every: int | None = None):
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
        self.slots, self.max_queue = slots, max_queue
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

    def _budget(self, samples: np.ndarray) -> int:
        return self.tr.max_new_tokens or max_new_tokens_for(len(samples) / RATE)

    # --- the caller's side ----------------------------------------------------------------------------------
    def submit(self, samples: np.ndarray, language: str | None = None) -> Future:
        """Queue one clip (16 kHz mono float32); the future resolves to its Transcription. ``Busy`` when the
        queue cannot take its chunks; ValueError for an unsupported language."""
        forced = language_name(language) if language else None
        a = np.asarray(samples, np.float32).reshape(-1)
        pieces = [a[s:e] if e > s else np.zeros(160, np.float32) for s, e in split_points(a, self.tr.chunk_s)]
        request = _Request(Future(), [None] * len(pieces), len(a) / RATE,
                           _NAME_TO_CODE[forced.lower()] if forced else None)
        with self._lock:
            free = sum(s is None for s in self._running)  # queued sequences take these at the next admission
            if self._queue and len(self._queue) + len(pieces) > self.max_queue + free:
                raise Busy(f"{self.slots - free} of {self.slots} slots busy and {len(self._queue)} sequences "
                           f"queued (at most {self.max_queue} wait)")
            self._queue.extend(_Sequence(request, j, p, forced) for j, p in enumerate(pieces))
            self._lock.notify()
        return request.future

    def start(self) -> "ContinuousBatcher":
        """Run the decode loop in a daemon thread."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="decode-loop", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the loop after its current steps; requests still queued or running get a RuntimeError."""
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            pending = [s.request for s in list(self._queue) + [r for r in self._running if r is not None]]
            self._queue.clear()
            self._running = [None] * self.slots
        for request in pending:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the decode loop was stopped"))

    def stats(self) -> dict:
        with self._lock:
            return {"slots": self.slots, "running": sum(s is not None for s in self._running),
                    "queued": len(self._queue), "max_queue": self.max_queue}

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        with torch.inference_mode():  # the state is made of inference tensors
            self._decode()

    def _decode(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._queue and all(s is None for s in self._running):
                    self._lock.wait()
                if self._stop:
                    return
                admit = []
                for row, seq in enumerate(self._running):
                    if seq is None and self._queue:
                        self._running[row] = self._queue.popleft()
                        admit.append(row)
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
            inputs = self.tr.prepare([seq.samples], seq.forced)
            self.engine.prefill(self.state, slice(row, row + 1), inputs, self._budget(seq.samples))
        except Exception as e:
            self._running[row] = None
            self.state.finished[row] = True
            self._fail(seq.request, e)

    def _collect(self) -> None:
        """One read of the device: the finished rows' tokens go to their requests, their slots free up."""
        finished = self.state.finished.tolist()
        n_gen = self.state.n_gen.tolist()
        for row, seq in enumerate(self._running):
            if seq is None or not finished[row]:
                continue
            ids = self.state.out[row, :n_gen[row]].tolist()
            with self._lock:
                self._running[row] = None
            request = seq.request
            request.parts[seq.index] = self.tr.decode(ids)
            if all(p is not None for p in request.parts) and not request.future.done():
                request.future.set_result(join_chunks(request.parts, request.duration_s,
                                                      time.perf_counter() - request.submitted,
                                                      request.forced_code, self.tr.repetition_threshold))

    def _fail(self, request: _Request, error: Exception) -> None:
        if not request.future.done():
            request.future.set_exception(error)

    def _fail_running(self, error: Exception) -> None:
        with self._lock:
            running = [s for s in self._running if s is not None]
            self._running = [None] * self.slots
        self.state.finished.fill_(True)
        for seq in running:
            self._fail(seq.request, error)
