import numpy as np
import pytest
import soundfile as sf

from polyglot_lion.data.audio import REJECT_REASONS, AudioRejected, decode_audio, decode_flac, encode_flac
from polyglot_lion.testing import audio_bytes, write_audio, write_silent_wav, write_truncated_wav


@pytest.mark.parametrize("rate, channels, fmt, ext", [
    (16_000, 1, "WAV", "wav"), (44_100, 2, "WAV", "wav"), (8_000, 1, "FLAC", "flac"),
    (48_000, 2, "OGG", "ogg"), (22_050, 1, "MP3", "mp3"), (32_000, 1, "AIFF", "aiff"),
])
def test_any_rate_and_channels_become_16k_mono(tmp_path, rate, channels, fmt, ext):
    path = write_audio(tmp_path / f"a.{ext}", 1.0, rate, channels, fmt=fmt)
    audio = decode_audio(path)
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.original_rate == rate and audio.original_channels == channels
    assert abs(audio.duration_s - 1.0) < 0.06  # mp3 adds encoder padding


def test_bytes_input_and_flac_round_trip():
    audio = decode_audio(audio_bytes(0.5, 22_050, "WAV"))
    flac = encode_flac(audio.samples)
    info = sf.info(__import__("io").BytesIO(flac))
    assert (info.format, info.samplerate, info.channels, info.subtype) == ("FLAC", 16_000, 1, "PCM_16")
    back = decode_flac(flac)
    assert len(back) == len(audio.samples)
    assert np.max(np.abs(back - audio.samples)) < 1e-3


def _reason(src, **kw):
    with pytest.raises(AudioRejected) as e:
        decode_audio(src, **kw)
    assert e.value.reason in REJECT_REASONS
    return e.value.reason


def test_reject_reasons(tmp_path):
    assert _reason(str(tmp_path / "nope.wav")) == "missing_audio"
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _reason(str(tmp_path / "empty.wav")) == "empty_audio"
    assert _reason(b"") == "empty_audio"
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16_000)
    assert _reason(str(tmp_path / "zero.wav")) == "empty_audio"
    (tmp_path / "text.wav").write_text("hello, not audio")
    assert _reason(str(tmp_path / "text.wav")) == "unreadable_audio"
    assert _reason(write_truncated_wav(tmp_path / "t.wav")) == "truncated_audio"
    flac = audio_bytes(2.0, 16_000, "FLAC")
    assert _reason(flac[: len(flac) // 2]) == "truncated_audio"
    assert _reason(write_silent_wav(tmp_path / "s.wav")) == "silent_audio"
    long_path = write_audio(tmp_path / "long.wav", 2.0)
    assert _reason(long_path, max_duration_s=1.5) == "too_long"
    assert _reason(long_path, min_duration_s=2.5) == "too_short"
    assert decode_audio(long_path, max_duration_s=2.5).duration_s == pytest.approx(2.0)


def test_streamed_wav_header_is_not_truncation(tmp_path):
    # programs that stream WAV to a pipe write a placeholder size; that is not a truncated file
    data = bytearray(audio_bytes(0.5, 16_000, "WAV"))
    data[4:8] = (0x7FFFFFFF).to_bytes(4, "little")
    data[40:44] = (0x7FFFF000).to_bytes(4, "little")
    assert decode_audio(bytes(data)).duration_s == pytest.approx(0.5)
