"""Dummies shipped with the library: tiny audio and tiny corpora in every supported format.

Tests, benchmarks and the demo share these, so nothing is downloaded. Each ``make_*`` writes a corpus that
mixes good records with one of each kind of bad record its format can have, and returns what an import
should find: ``Expected(accepted=N, rejected={reason: N})``.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# soundfile and pyarrow are imported where a dummy is written: the GPU benchmarks import ``tone`` and
# ``TOKENIZER_TEXTS`` on a bare CUDA box that has numpy and torch only (benchmarks/gpu_check.sh)


@dataclass
class Expected:
    accepted: int
    rejected: dict[str, int] = field(default_factory=dict)


def tone(seconds: float = 1.0, rate: int = 16_000, channels: int = 1, freq: float = 220.0,
         seed: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """A voiced-sounding test signal: a tone with harmonics and a little noise, (frames, channels). The noise comes
    from ``rng`` when given (a caller's stream, as the benchmarks draw many clips), else from ``seed``."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed) if rng is None else rng
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2 * freq * t)
    x = x + 0.01 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write_audio(path: str | os.PathLike, seconds: float = 1.0, rate: int = 16_000, channels: int = 1,
                fmt: str | None = None, seed: int = 0) -> str:
    path = str(path)
    import soundfile as sf  # see the note on imports above

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sf.write(path, tone(seconds, rate, channels, seed=seed), rate, format=fmt)
    return path


def audio_bytes(seconds: float = 1.0, rate: int = 16_000, fmt: str = "WAV", seed: int = 0) -> bytes:
    import soundfile as sf  # see the note on imports above

    buf = io.BytesIO()
    sf.write(buf, tone(seconds, rate, seed=seed), rate, format=fmt)
    return buf.getvalue()


def write_truncated_wav(path: str | os.PathLike, seconds: float = 1.0) -> str:
    full = audio_bytes(seconds, 16_000, "WAV")
    Path(path).write_bytes(full[: len(full) // 3])
    return str(path)


def write_silent_wav(path: str | os.PathLike, seconds: float = 0.5) -> str:
    import soundfile as sf  # see the note on imports above

    sf.write(str(path), np.zeros(int(seconds * 16_000), np.float32), 16_000)
    return str(path)


def make_jsonl_corpus(root: str | os.PathLike) -> tuple[str, Expected]:
    """A Qwen3-ASR style JSONL manifest with good and bad lines (every jsonl-level reason)."""
    root = Path(root)
    a = root / "audio"
    write_audio(a / "ok1.wav", 1.2, 22_050)
    write_audio(a / "ok2.flac", 0.8, 44_100, channels=2)
    write_audio(a / "ok3.ogg", 0.7, 16_000)
    write_audio(a / "long.wav", 3.0, 16_000)
    write_truncated_wav(a / "trunc.wav")
    write_silent_wav(a / "silent.wav")
    (a / "garbage.wav").write_bytes(b"this is not audio at all" * 10)
    (a / "empty.wav").write_bytes(b"")
    lines = [
        {"audio": "audio/ok1.wav", "text": "language English<asr_text>Hello, World!"},
        {"audio_filepath": "audio/ok2.flac", "text": "Saya suka makan nasi.", "speaker": "s1"},
        {"audio": "audio/ok3.ogg", "text": "language None<asr_text>你好 世界。"},
        {"audio": "audio/long.wav", "text": "too long"},
        {"audio": "audio/trunc.wav", "text": "truncated"},
        {"audio": "audio/silent.wav", "text": "silence"},
        {"audio": "audio/garbage.wav", "text": "garbage"},
        {"audio": "audio/empty.wav", "text": "empty"},
        {"audio": "audio/missing.wav", "text": "missing"},
        {"audio": "audio/ok1.wav", "id": "ok1-again", "text": " ¿¡ ... ! "},
        {"text": "no audio field"},
        {"audio": "audio/ok1.wav", "text": "duplicate of the first line"},
    ]
    manifest = root / "train.jsonl"
    with open(manifest, "wb") as f:
        for obj in lines:
            f.write((json.dumps(obj, ensure_ascii=False) + "\n").encode())
        f.write(b"{not json\n")
        f.write(b'{"audio": "audio/ok1.wav", "id": "bad-bytes", "text": "caf\xe9"}\n')
    # ok3 is Mandarin in an English dataset: wrong_script
    return str(manifest), Expected(2, {
        "too_long": 1, "truncated_audio": 1, "silent_audio": 1, "unreadable_audio": 1, "empty_audio": 1,
        "missing_audio": 1, "empty_text": 1, "malformed_manifest": 2, "duplicate_id": 1, "undecodable_text": 1,
        "wrong_script": 1,
    })


def make_csv_corpus(root: str | os.PathLike) -> tuple[str, Expected]:
    """A Common Voice style TSV (client_id, path, sentence, ...) with clips/ beside it."""
    root = Path(root)
    clips = root / "clips"
    write_audio(clips / "cv_ta_1.wav", 1.0, 48_000)
    write_audio(clips / "cv_ta_2.flac", 1.1, 32_000, channels=2)
    (clips / "cv_ta_3.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00broken mp3")
    rows = [
        "client_id\tpath\tsentence\tup_votes",
        "spk1\tcv_ta_1.wav\tவணக்கம், உலகம்!\t2",
        'spk2\tcv_ta_2.flac\t"நன்றி" என்றார்.\t1',
        "spk3\tcv_ta_3.mp3\tபூனை\t0",
        "spk4\tcv_ta_404.wav\tநாய்\t0",
        "spk5",
    ]
    manifest = root / "train.tsv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(manifest), Expected(2, {"unreadable_audio": 1, "missing_audio": 1, "malformed_manifest": 1})


def make_kaldi_dir(root: str | os.PathLike) -> tuple[str, Expected]:
    """An AISHELL-style Kaldi data dir: wav.scp, text (words separated by spaces), utt2spk."""
    root = Path(root)
    wav = root / "wav"
    write_audio(wav / "BAC009S0002W0122.wav", 1.0, 16_000)
    write_audio(wav / "BAC009S0002W0123.wav", 1.5, 16_000)
    (root / "wav.scp").write_text(
        f"BAC009S0002W0122 {wav / 'BAC009S0002W0122.wav'}\n"
        f"BAC009S0002W0123 wav/BAC009S0002W0123.wav\n"
        "BAC009S0002W0124 sox in.wav -t wav - |\n"
        "BAC009S0002W0125 wav/no_text.wav\n", encoding="utf-8")
    (root / "text").write_bytes(
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限购\n"
        "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
        "BAC009S0002W0124 被 管道 命令\n"
        "BAC009S0002W0126 没有 音频\n".encode() + b"BAC009S0002W0127 \xff\xfe bad\n")
    (root / "utt2spk").write_text("BAC009S0002W0122 S0002\nBAC009S0002W0123 S0002\n", encoding="utf-8")
    return str(root), Expected(2, {"unsupported_entry": 1, "malformed_manifest": 1, "missing_audio": 1,
                                   "undecodable_text": 1})


def make_librispeech_tree(root: str | os.PathLike) -> tuple[str, Expected]:
    """speaker/chapter/speaker-chapter.trans.txt with UTTID.flac beside it."""
    root = Path(root)
    d1 = root / "103" / "1240"
    d2 = root / "1034" / "121119"
    write_audio(d1 / "103-1240-0000.flac", 1.3, 16_000, fmt="FLAC")
    write_audio(d1 / "103-1240-0001.flac", 0.9, 16_000, fmt="FLAC")
    write_audio(d2 / "1034-121119-0000.flac", 1.0, 16_000, fmt="FLAC")
    (d1 / "103-1240.trans.txt").write_text(
        "103-1240-0000 CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED\n"
        "103-1240-0001 MISSUS RACHEL LYNDE LIVED JUST WHERE THE AVONLEA MAIN ROAD DIPPED\n"
        "103-1240-0002 THIS FILE IS MISSING\n", encoding="utf-8")
    (d2 / "1034-121119.trans.txt").write_text("1034-121119-0000 THE BOY'S DOG RAN\n", encoding="utf-8")
    return str(root), Expected(3, {"missing_audio": 1})


def make_hf_parquet(root: str | os.PathLike) -> tuple[str, Expected]:
    """A Hugging Face datasets Parquet file: ``audio`` struct {bytes, path} and ``text``."""
    import pyarrow as pa  # see the note on imports above
    import pyarrow.parquet as pq

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_audio(root / "side.wav", 0.9, 24_000)
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [
        {"audio": {"bytes": audio_bytes(1.0, 16_000, "FLAC", 1), "path": "fleurs_ms_1.flac"},
         "text": "Selamat pagi, Singapura!", "id": "ms1"},
        {"audio": {"bytes": audio_bytes(1.2, 22_050, "WAV", 2), "path": None}, "text": "Terima kasih.", "id": "ms2"},
        {"audio": {"bytes": None, "path": "side.wav"}, "text": "Fail di sebelah.", "id": "ms3"},
        {"audio": {"bytes": b"\x00\x01garbage", "path": "bad.wav"}, "text": "rosak", "id": "ms4"},
        {"audio": {"bytes": audio_bytes(0.5, 16_000, "WAV", 3), "path": None}, "text": None, "id": "ms5"},
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("audio", audio_type), ("text", pa.string()),
                                                         ("id", pa.string())]))
    path = root / "train-00000-of-00001.parquet"
    pq.write_table(table, path)
    return str(path), Expected(3, {"unreadable_audio": 1, "empty_text": 1})


def write_original_format_checkpoint(model, processor, out_dir: str | os.PathLike) -> str:
    """Save a Qwen3-ASR model the way the original ``Qwen/Qwen3-ASR-*`` releases are laid out: ``thinker.*``
    weights and a ``thinker_config`` (the layout transformers would load as random weights)."""
    from safetensors.torch import save_file

    inverse = [("model.language_model.", "thinker.model."), ("lm_head.", "thinker.lm_head."),
               ("model.multi_modal_projector.linear_1.", "thinker.audio_tower.proj1."),
               ("model.multi_modal_projector.linear_2.", "thinker.audio_tower.proj2."), ("model.", "thinker.")]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        for old, new in inverse:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        tensors[name] = t.detach().clone().contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    thinker = {"audio_config": cfg["audio_config"], "text_config": cfg["text_config"],
               "audio_token_id": cfg["audio_token_id"], "pad_token_id": cfg["pad_token_id"],
               "eos_token_id": cfg["eos_token_id"], "tie_word_embeddings": cfg["tie_word_embeddings"]}
    (out / "config.json").write_text(json.dumps({"architectures": ["Qwen3ASRForConditionalGeneration"],
                                                 "model_type": "qwen3_asr", "thinker_config": thinker}, indent=2))
    processor.save_pretrained(str(out))
    return str(out)


# The GPU benchmarks' in-process tokenizer: only its special tokens and chat template matter there.
TOKENIZER_TEXTS = ["hello world the cat sat on the mat", "saya suka makan nasi di pasar", "我们今天去公园",
                   "வணக்கம் உலகம்"] * 8

TINY_TEXTS = [
    "hello world the cat sat on the mat", "saya suka makan nasi di pasar", "我们今天去公园", "வணக்கம் உலகம்",
    "good morning singapore", "terima kasih banyak", "你好世界", "நன்றி நண்பன்",
] * 4
