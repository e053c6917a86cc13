"""Audio decoding to 16 kHz mono float32, FLAC encoding, and the reasons a clip is rejected."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from .schema import SAMPLE_RATE

# Every reason a record can be rejected anywhere in import, with what it means. Stats and summaries use these keys.
REJECT_REASONS: dict[str, str] = {
    "malformed_manifest": "the manifest line/row could not be parsed or lacks a required field",
    "duplicate_id": "another record of the same dataset/split already has this id",
    "missing_audio": "the audio file named by the manifest does not exist",
    "unreadable_audio": "the audio could not be decoded (not audio, unsupported or corrupt)",
    "truncated_audio": "the audio ends before its header says it does",
    "empty_audio": "the audio has no samples",
    "silent_audio": "every sample of the audio is zero",
    "too_long": "the audio is longer than the maximum duration",
    "too_short": "the audio is shorter than the minimum duration",
    "empty_text": "the transcript is empty after normalisation",
    "undecodable_text": "the transcript is not valid UTF-8",
    "unsupported_entry": "the manifest entry is of a kind the importer does not run (e.g. a piped wav.scp command)",
    "missing_transcript": "the audio has no transcript (no line in the corpus's transcript file)",
    "unreadable_member": "an archive member (or the archive holding it) could not be read",
    "member_too_large": "an archive member is larger than the size a member may have",
    "not_a_regular_file": "the entry is a link, a device, a FIFO or a directory, not a plain file",
    "unreadable_textgrid": "a Praat TextGrid that could not be parsed",
    "bad_segment": "a segment that is empty or lies (partly) outside its recording",
    "over_decode_limits": "the header asks for more channels, a higher sample rate or more decoded bytes than "
                          "the decode limits allow (DecodeLimits)",
    "wrong_script": "the transcript's letters are mostly in a script that does not fit the dataset's language",
}

# Formats whose header states the exact frame count, so a short read means truncation.
_EXACT_LENGTH_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF", "AU"}


# libsndfile's log for a WAV whose data chunk is cut short: "data : 45350 (should be 1956)".
_SHORT_CHUNK_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_PLACEHOLDER = 0x7FFF0000  # sizes written by programs that stream WAV to a pipe


def _declared_minus_actual(log: str) -> int:
    m = _SHORT_CHUNK_RE.search(log or "")
    if not m:
        return 0
    declared, actual = int(m.group(1)), int(m.group(2))
    return 0 if declared >= _STREAMING_PLACEHOLDER else max(0, declared - actual)


class AudioRejected(Exception):
    """A clip that cannot be used; ``reason`` is a key of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeLimits:
    """What one clip may ask of the decoder, checked against its header before any sample is read.

    A few hundred KB of FLAC can declare 192 kHz x 8 channels x 10 minutes, several GiB once decoded to float32;
    these bounds refuse it (``over_decode_limits``) before the allocation. The read itself is bounded by the same
    numbers, so a header that understates its length cannot grow the allocation either."""

    max_channels: int = 8
    max_rate_hz: int = 192_000
    max_decoded_mb: float = 256.0  # frames x channels x 4 bytes (float32) at the source rate, before downmixing

    def __post_init__(self):
        for name in ("max_channels", "max_rate_hz", "max_decoded_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DecodeLimits.{name} must be > 0 (is {getattr(self, name)})")

    @property
    def max_decoded_bytes(self) -> int:
        return int(self.max_decoded_mb * 2**20)

    def check_header(self, rate: int, channels: int, frames: int | None) -> None:
        """Raise AudioRejected('over_decode_limits') naming the value and the limit; ``frames`` None: unknown."""
        if channels > self.max_channels:
            raise AudioRejected("over_decode_limits", f"{channels} channels > {self.max_channels} allowed")
        if rate > self.max_rate_hz:
            raise AudioRejected("over_decode_limits", f"sample rate {rate} Hz > {self.max_rate_hz} Hz allowed")
        if frames is not None and frames * channels * 4 > self.max_decoded_bytes:
            raise AudioRejected("over_decode_limits",
                                f"{frames / rate:.1f} s x {rate} Hz x {channels} channels would decode to "
                                f"{frames * channels * 4 / 2**20:.0f} MiB > {self.max_decoded_mb:g} MiB allowed")

    def max_frames(self, channels: int) -> int:
        return self.max_decoded_bytes // (4 * channels)


# libsndfile names the file object it was given ("Error opening <_io.BytesIO object at 0x7f...>: ..."); a client
# gets the message, never our object's repr
_OBJECT_REPR_RE = re.compile(r"<[^<>]*? object at 0x[0-9a-fA-F]+>")


def without_object_reprs(message: str) -> str:
    """``message`` with any "<... object at 0x...>" replaced: error texts reach clients and rows."""
    return _OBJECT_REPR_RE.sub("the audio", message).strip()


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    original_rate: int
    original_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def decode_audio(
    source: str | bytes,
    max_duration_s: float | None = None,
    min_duration_s: float = 0.0,
    limits: DecodeLimits | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> DecodedAudio:
    """Decode a path or encoded bytes to 16 kHz mono float32, or raise AudioRejected with the reason.

    ``limits``: refuse (``over_decode_limits``) a header asking for more than they allow, before any sample is
    read, and read at most that many frames whatever the header says.
    With ``start_s``/``end_s`` only the span ``[start_s, end_s)`` of the recording is decoded (a segment of a long
    recording, e.g. one TextGrid interval): the file is seeked, never decoded whole.
    """
    if isinstance(source, str):
        if not os.path.exists(source):
            raise AudioRejected("missing_audio", source)
        if os.path.getsize(source) == 0:
            raise AudioRejected("empty_audio", "file has 0 bytes")
        handle: object = source
    else:
        if len(source) == 0:
            raise AudioRejected("empty_audio", "0 bytes")
        handle = io.BytesIO(source)
    try:
        f = sf.SoundFile(handle)
    except Exception as e:  # libsndfile says "Format not recognised", "Error in WAV file", ...
        raise AudioRejected("unreadable_audio", without_object_reprs(str(e))[:200]) from None
    with f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        if rate <= 0 or channels <= 0:
            raise AudioRejected("unreadable_audio", f"invalid header (rate={rate}, channels={channels})")
        known = 0 < frames < 2**62
        if start_s is not None:
            frames = _seek_segment(f, start_s, end_s, rate, frames if known else None, max_duration_s)
        elif max_duration_s is not None and known and frames / rate > max_duration_s:
            raise AudioRejected("too_long", f"{frames / rate:.2f}s > {max_duration_s}s")
        cap = -1
        if limits is not None:
            limits.check_header(rate, channels, frames if 0 < frames < 2**62 else None)
            cap = limits.max_frames(channels)
        try:
            want = frames if start_s is not None else -1
            if cap >= 0:
                want = cap + 1 if want < 0 else min(want, cap + 1)
            data = f.read(want, dtype="float32", always_2d=True)
        except Exception as e:
            detail = without_object_reprs(str(e))[:160]
            raise AudioRejected("truncated_audio", f"decoding stopped: {detail}") from None
        if 0 <= cap < len(data):
            raise AudioRejected("over_decode_limits", f"more than {cap} frames x {channels} channels "
                                                      f"(> {limits.max_decoded_mb:g} MiB decoded)")
        exact = f.format in _EXACT_LENGTH_FORMATS
        short_by = _declared_minus_actual(f.extra_info) if exact and start_s is None else 0
    if len(data) == 0:
        raise AudioRejected("empty_audio", "no samples")
    if exact and 0 < frames < 2**62 and len(data) < frames:
        raise AudioRejected("truncated_audio", f"{len(data)} of {frames} frames present")
    if short_by > 0:
        raise AudioRejected("truncated_audio", f"data chunk is {short_by} bytes shorter than its header says")
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    duration = len(mono) / SAMPLE_RATE
    if max_duration_s is not None and duration > max_duration_s:
        raise AudioRejected("too_long", f"{duration:.2f}s > {max_duration_s}s")
    if duration < min_duration_s:
        raise AudioRejected("too_short", f"{duration:.3f}s < {min_duration_s}s")
    if not np.any(mono):
        raise AudioRejected("silent_audio", "all samples are zero")
    return DecodedAudio(mono, rate, channels)


def _seek_segment(f: sf.SoundFile, start_s: float, end_s: float | None, rate: int, frames: int | None,
                  max_duration_s: float | None) -> int:
    """Position ``f`` at the segment's first frame; return how many frames the segment has."""
    if end_s is None or not (0 <= start_s < end_s):
        raise AudioRejected("bad_segment", f"segment [{start_s}, {end_s}) is empty or negative")
    if max_duration_s is not None and end_s - start_s > max_duration_s:
        raise AudioRejected("too_long", f"segment of {end_s - start_s:.2f}s > {max_duration_s}s")
    first, last = int(round(start_s * rate)), int(round(end_s * rate))
    if frames is not None and last > frames + int(0.01 * rate):  # 10 ms of rounding in a TextGrid is fine
        raise AudioRejected("bad_segment", f"segment [{start_s:.3f}, {end_s:.3f}) s ends after the recording "
                                           f"({frames / rate:.3f} s)")
    if frames is not None:
        last = min(last, frames)
    if last <= first:
        raise AudioRejected("bad_segment", f"segment [{start_s:.3f}, {end_s:.3f}) s has no frames")
    if not f.seekable():
        raise AudioRejected("unreadable_audio", "segment of a recording that cannot be seeked")
    f.seek(first)
    return last - first


def encode_flac(samples: np.ndarray) -> bytes:
    """16 kHz mono float32 -> FLAC (PCM_16) bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> np.ndarray:
    """Store FLAC bytes -> float32 samples (the store is always 16 kHz mono)."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SAMPLE_RATE, rate
    return samples
