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


def test_decode_limits_refuse_the_bomb_from_its_header_before_reading_samples():
    import resource
    import time

    from polyglot_lion.data.audio import DecodeLimits
    from polyglot_lion.testing.hostile import bomb_flac, header_bomb_wav

    bomb = bomb_flac()  # the probe's: ~430 KB, 590 s x 192 kHz x 2 channels
    assert len(bomb) < 1_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(AudioRejected) as e:
        decode_audio(bomb, max_duration_s=600, limits=DecodeLimits())
    assert time.perf_counter() - t0 < 0.5
    assert e.value.reason == "over_decode_limits"
    assert "590.0 s x 192000 Hz x 2 channels" in e.value.detail and "> 256 MiB allowed" in e.value.detail
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100_000  # KiB: nothing decoded
    with pytest.raises(AudioRejected, match="64 channels > 8 allowed"):
        decode_audio(header_bomb_wav(), limits=DecodeLimits())
    hi_rate = audio_bytes(0.1, rate=96_000)
    with pytest.raises(AudioRejected, match="sample rate 96000 Hz > 48000 Hz allowed"):
        decode_audio(hi_rate, limits=DecodeLimits(max_rate_hz=48_000))
    assert decode_audio(hi_rate, limits=DecodeLimits()).duration_s == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match=r"DecodeLimits.max_channels must be > 0 \(is 0\)"):
        DecodeLimits(max_channels=0)


def test_decode_limits_bound_the_read_when_the_header_gives_no_length():
    from polyglot_lion.data.audio import DecodeLimits

    ogg = audio_bytes(2.0, fmt="OGG")  # 2 s x 16 kHz x 4 bytes = 125 KiB decoded
    with pytest.raises(AudioRejected) as e:
        decode_audio(ogg, limits=DecodeLimits(max_decoded_mb=0.05))
    assert e.value.reason == "over_decode_limits"


def test_error_details_never_carry_object_reprs():
    with pytest.raises(AudioRejected) as e:
        decode_audio(b"this is not audio at all" * 10)
    assert " at 0x" not in str(e.value) and "BytesIO" not in str(e.value)
