"""Continuous batching (``inference/scheduler.py``): sequences join free slots between decode steps, each is
answered when its own sequence ends, with the ids it gets alone; a full queue says Busy."""

import threading
import time

import numpy as np
import pytest

from polyglot_lion.inference.scheduler import Busy, ContinuousBatcher
from polyglot_lion.inference.transcriber import Transcriber, split_points
from polyglot_lion.model.tiny import build_tiny_model, vary_decoder
from polyglot_lion.testing import TINY_TEXTS, tone

MIXED = [(1.3, 150), (3.1, 300), (0.3, 220), (2.2, 500), (0.9, 400)]  # seconds, Hz


def clips(spec) -> list[np.ndarray]:
    return [tone(s, freq=f, seed=i)[:, 0] for i, (s, f) in enumerate(spec)]


@pytest.fixture(scope="module")
def transcriber():
    """A tiny model whose greedy output varies token by token (it rarely says EOS: rows end at their budget,
    which follows each clip's duration, so sequences end at different steps)."""
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    vary_decoder(model, 0.2)
    return Transcriber(model, processor, batch_size=8, chunk_s=2.0)


def test_each_clip_gets_the_ids_it_gets_alone(transcriber):
    """Five clips (one cut into two chunks) through two slots: queueing, slot reuse, rows at different steps."""
    batcher = ContinuousBatcher(transcriber, slots=2, max_queue=16).start()
    try:
        audio = clips(MIXED)
        futures = [batcher.submit(a, language) for a, language in zip(audio, [None, None, "ta", None, "en"])]
        results = [f.result(timeout=300) for f in futures]
    finally:
        batcher.stop()
    for a, language, r in zip(audio, [None, None, "ta", None, "en"], results):
        # each chunk alone (a sequence's budget follows its own chunk, not the longest of a batch)
        alone = [transcriber.transcribe([a[s:e]], language)[0] for s, e in split_points(a, transcriber.chunk_s)]
        assert r.raw == "\n".join(x.raw for x in alone) and r.chunks == len(alone)
        if len(alone) == 1:
            assert (r.text, r.language) == (alone[0].text, alone[0].language)
        assert r.seconds > 0 and r.duration_s == pytest.approx(len(a) / 16000)
        assert 0 <= r.timings["wait_s"] < r.seconds and 1 <= r.timings["rows"] <= 2
    assert results[1].chunks == 2 and results[2].language == "ta"
    assert batcher.stats() == {"slots": 2, "running": 0, "queued": 0, "max_queue": 16}


def test_a_short_clip_is_answered_before_a_long_one_started_earlier(transcriber):
    """The long clip's budget is 16 + 15/s: its sequence outlives the short one's, which joined after it."""
    batcher = ContinuousBatcher(transcriber, slots=4, max_queue=4)
    done: list[str] = []
    lock = threading.Lock()

    def record(name):
        def callback(_):
            with lock:
                done.append(name)
        return callback

    long_clip, short_clip = tone(1.9, freq=300)[:, 0], tone(0.2, freq=200, seed=1)[:, 0]
    long_future = batcher.submit(long_clip)
    long_future.add_done_callback(record("long"))
    batcher.start()
    try:
        short_future = batcher.submit(short_clip)
        short_future.add_done_callback(record("short"))
        long_future.result(timeout=300), short_future.result(timeout=300)
    finally:
        batcher.stop()
    assert done == ["short", "long"]


def test_a_full_queue_says_busy_and_stop_fails_what_waits(transcriber):
    batcher = ContinuousBatcher(transcriber, slots=1, max_queue=1)  # not started: nothing leaves the queue
    clip = tone(0.5)[:, 0]
    first, second = batcher.submit(clip), batcher.submit(clip)  # one for the free slot, one waiting
    with pytest.raises(Busy, match="1 of 1 slots taken and 1 sequences waiting \\(at most 1 wait\\)"):
        batcher.submit(clip)
    assert batcher.stats()["queued"] == 2
    batcher.stop()
    for f in (first, second):
        with pytest.raises(RuntimeError, match="stopped"):
            f.result(timeout=1)


def test_busy_counts_the_slots_and_a_request_too_big_for_any_queue_waits_alone(transcriber):
    batcher = ContinuousBatcher(transcriber, slots=1, max_queue=0)  # not started
    clip = tone(0.5)[:, 0]
    batcher.submit(clip)  # takes the free slot at the next admission
    with pytest.raises(Busy, match="1 of 1 slots taken and 0 sequences waiting \\(at most 0 wait\\)"):
        batcher.submit(clip)
    batcher.stop()
    batcher = ContinuousBatcher(transcriber, slots=1, max_queue=1)
    five = tone(5.0)[:, 0]  # three chunks of at most 2 s: more than one slot and one queue place hold
    assert len(split_points(five, transcriber.chunk_s)) == 3
    batcher.submit(five)  # taken: nothing waits
    assert batcher.stats()["queued"] == 3
    with pytest.raises(Busy):
        batcher.submit(clip)
    batcher.stop()


def test_close_answers_what_was_submitted_then_ends(transcriber):
    """close() drains; a batcher started ``after`` it (the same engine, new slots) takes submissions at once and
    decodes them once the first has ended."""
    first = ContinuousBatcher(transcriber, slots=2, max_queue=8).start()
    futures = [first.submit(a) for a in clips(MIXED[:3])]
    first.close()
    second = ContinuousBatcher(transcriber, slots=3, max_queue=8).start(after=first)
    later = second.submit(tone(0.4)[:, 0])
    try:
        assert all(f.result(timeout=300).text is not None for f in futures)
        assert later.result(timeout=300).chunks == 1
        assert first._done.wait(30) and not first.alive and second.alive
        assert first.warm_up_s >= 0 and second.warm_up_s >= 0
        with pytest.raises(RuntimeError, match="stopped"):
            first.submit(tone(0.5)[:, 0])
    finally:
        second.stop()


def test_a_cancelled_request_leaves_its_slot(transcriber):
    """A client that goes away cancels its future: a running sequence frees its slot at the next check, a queued
    one never takes a slot. Every sequence here runs its whole budget (16 + 15/s), so the rounds are counted."""
    tr = Transcriber(transcriber.model, transcriber.processor, chunk_s=30.0, stop_at_eos=False, stop_on_loop=False)
    rounds: list[int] = []
    batcher = ContinuousBatcher(tr, slots=1, max_queue=4, on_round=rounds.append).start()
    try:
        running = batcher.submit(tone(20.0)[:, 0])  # 316 tokens: 40 rounds of 8 steps
        deadline = time.time() + 60
        while batcher.stats()["running"] == 0:
            assert time.time() < deadline
            time.sleep(0.01)
        queued = batcher.submit(tone(20.0, seed=2)[:, 0])
        assert running.cancel() and queued.cancel()
        short = batcher.submit(tone(0.3, seed=1)[:, 0])  # 20 tokens: 3 rounds
        assert short.result(timeout=300).chunks == 1
    finally:
        batcher.stop()
    assert running.cancelled() and queued.cancelled()
    assert len(rounds) < 20, len(rounds)


def test_bad_settings_are_named(transcriber):
    with pytest.raises(ValueError, match="slots must be >= 1 \\(is 0\\); max_queue must be >= 0 \\(is -1\\)"):
        ContinuousBatcher(transcriber, slots=0, max_queue=-1)
    hf = Transcriber(transcriber.model, transcriber.processor, engine="hf")
    with pytest.raises(ValueError, match="engine must be 'static' \\(is 'hf'\\)"):
        ContinuousBatcher(hf)
    with pytest.raises(ValueError, match="language 'fr' is not supported"):
        ContinuousBatcher(transcriber).submit(tone(0.5)[:, 0], "fr")
