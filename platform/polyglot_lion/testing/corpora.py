"""Miniatures of the paper's twelve corpora as their publishers lay them out, built in-process.

Each ``make_<recipe>`` writes a few utterances in the publisher's file names, folder nesting, encodings (UTF-8
with a BOM, CRLF line ends, UTF-16 TextGrids), archive nesting (zips and tar.gz read in place) and sample
rates (16, 22.05, 24, 44.1 and 48 kHz; FLAC, WAV and MP3), with the cases a recipe must handle on purpose
(NSC markup, AISHELL-3 pinyin, FLEURS prompts read by several speakers) and one record of each kind of bad
input the layout can have. It returns a ``Miniature``: what an import must find.

``make_paper_downloads(root)`` lays all of them out the way ``jobs/configs/corpora/paper.yaml`` expects.
``scale`` adds that many more good utterances per speaker/folder (benchmarks use it).
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ..data.recipes import get_recipe
from . import tone


@dataclass
class Miniature:
    recipe: str
    input: str
    language: str | None
    accepted: int  # over all splits
    rejected: dict[str, int]  # over all splits
    splits: dict[str, int] | None  # accepted per split (None: the split is made by the recipe)
    texts: dict[str, str] = field(default_factory=dict)  # utterance id -> normalised text
    durations: dict[str, float] = field(default_factory=dict)  # utterance id -> seconds (segments)

    @property
    def dataset(self) -> str:
        return get_recipe(self.recipe).dataset_for(self.language)


def _encoded(seconds: float, rate: int, fmt: str, seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, rate, freq=180.0 + 20 * (seed % 7), seed=seed), rate, format=fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _text(path: Path, lines: list[str], bom: bool = False, crlf: bool = False, encoding: str = "utf-8") -> Path:
    body = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    data = body.encode(encoding)
    return _write(path, (b"\xef\xbb\xbf" if bom else b"") + data)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _corrupt_zip_member(path: Path, member: str) -> None:
    """Flip bytes inside a stored member's data, so that reading it fails its CRC check."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 100, start + 140):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _textgrid(path: Path, tier: str, xmax: float, intervals: list[tuple[float, float, str]],
              encoding: str) -> Path:
    """A long-format TextGrid written by praatio, re-encoded as Praat or another tool would save it."""
    from praatio import textgrid

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier(tier, intervals, 0, xmax))
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tg.save(str(tmp), format="long_textgrid", includeBlankSpaces=True)
    text = tmp.read_text(encoding="utf-8")
    tmp.unlink()
    data = text.encode("utf-16") if encoding == "utf-16" else (b"\xef\xbb\xbf" + text.encode()
                                                                if encoding == "utf-8-sig" else text.encode())
    return _write(path, data)


def make_librispeech(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """``LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/`` with FLAC and .trans.txt (CRLF in one)."""
    base = Path(root) / "LibriSpeech"
    t = base / "train-clean-100" / "103" / "1240"
    _write(t / "103-1240-0000.flac", _encoded(1.0, 16_000, "FLAC", 1))
    _write(t / "103-1240-0001.flac", _encoded(0.8, 16_000, "FLAC", 2))
    lines = ["103-1240-0000 CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED",
             "103-1240-0001 MISSUS RACHEL LYNDE LIVED JUST WHERE THE AVONLEA MAIN ROAD DIPPED",
             "103-1240-0002 THIS ONE HAS NO AUDIO"]
    for i in range(scale):
        _write(t / f"103-1240-{100 + i:04d}.flac", _encoded(1.0, 16_000, "FLAC", 100 + i))
        lines.append(f"103-1240-{100 + i:04d} SCALED UTTERANCE NUMBER {i}")
    _text(t / "103-1240.trans.txt", lines, crlf=True)
    _write(t / "103-1240-0009.flac", _encoded(0.5, 16_000, "FLAC", 9))  # no transcript line
    _write(t / "103-1240-0008.flac", b"fLaC but nothing else")  # listed below, does not decode
    lines.append("103-1240-0008 THIS ONE DOES NOT DECODE")
    _text(t / "103-1240.trans.txt", lines, crlf=True)
    d = base / "dev-clean" / "1272" / "128104"
    _write(d / "1272-128104-0000.flac", _encoded(0.9, 16_000, "FLAC", 3))
    _text(d / "1272-128104.trans.txt", ["1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES"])
    s = base / "test-clean" / "1089" / "134686"
    _write(s / "1089-134686-0000.flac", _encoded(0.7, 16_000, "FLAC", 4))
    _text(s / "1089-134686.trans.txt", ["1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER"])
    return Miniature("librispeech", str(root), None, 4 + scale,
                     {"missing_audio": 1, "missing_transcript": 1, "unreadable_audio": 1},
                     {"train": 2 + scale, "dev": 1, "test": 1},
                     {"librispeech/train/103-1240-0000": "chapter one missus rachel lynde is surprised",
                      "librispeech/test/1089-134686-0000": "he hoped there would be stew for dinner"})


def make_nsc(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """Part 1 scripts (BOM, CRLF, raw + normalised lines) with per-speaker WAVE zips, Part 3 and Part 4 long
    recordings with UTF-16 / UTF-8-BOM TextGrids, NSC markup, and one of each bad record."""
    main = Path(root) / "IMDA - National Speech Corpus"
    ch0 = main / "PART1" / "DATA" / "CHANNEL0"
    script1 = ["000010001\tIt's time, lah!", "\tit's <FIL/> time [lah]",
               "000010002\tWah, the hello makan.", "\t!wah! the (ppl) hel~ hello #makan# <UNK>",
               "000010003\tThis has no audio.", "\tthis has no audio"]
    members1 = {"SPEAKER0001/SESSION0/000010001.WAV": _encoded(1.0, 16_000, "WAV", 11),
                "SPEAKER0001/SESSION0/000010002.WAV": _encoded(0.8, 16_000, "WAV", 12),
                "SPEAKER0001/SESSION0/000010004.WAV": _encoded(0.6, 16_000, "WAV", 13)}  # no script line
    for i in range(scale):
        uid = f"00001{100 + i:04d}"
        script1 += [f"{uid}\tScaled line {i}.", f"\tscaled line {i}"]
        members1[f"SPEAKER0001/SESSION0/{uid}.WAV"] = _encoded(1.0, 16_000, "WAV", 200 + i)
    _text(ch0 / "SCRIPT" / "000010.TXT", script1, bom=True, crlf=True)
    _zip(ch0 / "WAVE" / "SPEAKER0001.zip", members1)
    _text(ch0 / "SCRIPT" / "000020.TXT", ["000020001\tOkay can.", "\tokay can",
                                          "000020002\tBroken audio.", "\tbroken audio"], bom=True, crlf=True)
    _zip(ch0 / "WAVE" / "SPEAKER0002.zip", {"SPEAKER0002/SESSION0/000020001.WAV": _encoded(0.9, 44_100, "WAV", 14),
                                            "SPEAKER0002/SESSION0/000020002.WAV": b"RIFF\x00\x00not a wave file"})
    p3 = main / "PART3"
    (p3 / "Audio Same CloseMic").mkdir(parents=True)
    sf.write(str(p3 / "Audio Same CloseMic" / "3000-1.wav"), tone(36.0, 16_000, seed=15), 16_000)
    _textgrid(p3 / "Scripts Same" / "3000-1.TextGrid", "3000-1", 36.0,
              [(0.5, 2.0, "hello <FIL/> world"), (2.5, 4.0, "[lah] ok can"), (4.5, 5.0, "<SPK/>"),
               (5.0, 35.5, "a turn that is far too long")], encoding="utf-16")
    _text(p3 / "Scripts Same" / "3000-2.TextGrid", ['File type = "ooTextFile"', "this is not a textgrid"])
    _write(p3 / "Audio Same CloseMic" / "3000-2.wav", _encoded(1.0, 16_000, "WAV", 16))
    extra = Path(root) / "IMDA - National Speech Corpus - Additional" / "PART4"
    _write(extra / "Audio Same CloseMic" / "4000-1.wav", _encoded(3.0, 48_000, "WAV", 17))
    _textgrid(extra / "Scripts Same" / "4000-1.TextGrid", "4000-1", 3.5,
              [(0.25, 1.25, "can or not"), (2.0, 3.5, "past the end")], encoding="utf-8-sig")
    return Miniature("nsc", str(root), None, 6 + scale,
                     {"missing_audio": 1, "missing_transcript": 1, "unreadable_audio": 1, "too_long": 1,
                      "empty_text": 1, "unreadable_textgrid": 1, "bad_segment": 1}, None,
                     {"nsc/*/part1-000010001": "its time lah", "nsc/*/part1-000010002": "wah the hello makan",
                      "nsc/*/part3-3000-1-000000500": "hello world", "nsc/*/part3-3000-1-000002500": "lah ok can",
                      "nsc/*/part4-4000-1-000000250": "can or not"},
                     {"nsc/*/part3-3000-1-000000500": 1.5, "nsc/*/part3-3000-1-000002500": 1.5,
                      "nsc/*/part4-4000-1-000000250": 1.0})


def make_commonvoice(root: str | os.PathLike, language: str, scale: int = 0) -> Miniature:
    """``cv-corpus-23.0-2025-09-05/<locale>/{train,dev,test}.tsv`` (header row) + ``clips/*.mp3`` at 48 kHz."""
    locale = {"zh": "zh-CN", "ta": "ta"}[language]
    d = Path(root) / "cv-corpus-23.0-2025-09-05" / locale
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    texts = {"zh": ["你好，世界！", "我们今天去公园。", "没有音频", "谢谢你"], "ta": ["வணக்கம், உலகம்!", "நன்றி.", "இல்லை", "பூனை"]}[language]

    def row(n: int, text: str) -> str:
        return f"spk{n}\tcommon_voice_{locale}_{n}.mp3\ts{n}\t{text}\t\t2\t0\t\t\t\t\t{locale}\t"

    train = [header, row(1, texts[0]), row(2, texts[1]), row(3, texts[2])]
    _write(d / "clips" / f"common_voice_{locale}_1.mp3", _encoded(1.0, 48_000, "MP3", 21))
    _write(d / "clips" / f"common_voice_{locale}_2.mp3", _encoded(0.8, 48_000, "MP3", 22))
    for i in range(scale):
        n = 100 + i
        train.append(row(n, f"{texts[3]} {i}"))
        _write(d / "clips" / f"common_voice_{locale}_{n}.mp3", _encoded(1.0, 48_000, "MP3", n))
    train.append("spk9\tbroken row")
    _text(d / "train.tsv", train)
    _text(d / "dev.tsv", [header, row(4, texts[3])])
    _write(d / "clips" / f"common_voice_{locale}_4.mp3", _encoded(0.7, 48_000, "MP3", 24))
    _text(d / "test.tsv", [header, row(5, texts[1])])
    _write(d / "clips" / f"common_voice_{locale}_5.mp3", _encoded(0.9, 48_000, "MP3", 25))
    ds = f"cv-{language}"
    first = {"zh": "你好世界", "ta": "வணக்கம் உலகம்"}[language]
    return Miniature("commonvoice", str(root), language, 4 + scale, {"missing_audio": 1, "malformed_manifest": 1},
                     {"train": 2 + scale, "dev": 1, "test": 1}, {f"{ds}/train/common_voice_{locale}_1": first})


def make_aishell1(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """``data_aishell/transcript/aishell_transcript_v0.8.txt`` + ``data_aishell/wav/<spk>.tar.gz`` holding
    ``{train,dev,test}/<spk>/<utt>.wav``; a transcript line with no audio (inside and outside an archive), audio
    with no line, and a corrupt member."""
    base = Path(root) / "data_aishell"
    lines = ["BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限购",
             "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉",
             "BAC009S0002W0124 这 一句 没有 音频",
             "BAC009S0724W0150 开发 商 在 京 拿 地",
             "BAC009S0764W0200 房价 依然 坚挺",
             "BAC009S0764W0201 这个 文件 坏 了",
             "BAC009S0999W0300 没有 这个 说话人 的 音频"]
    s0002 = {"train/S0002/BAC009S0002W0122.wav": _encoded(1.0, 16_000, "WAV", 31),
             "train/S0002/BAC009S0002W0123.wav": _encoded(0.8, 16_000, "WAV", 32),
             "train/S0002/BAC009S0002W0125.wav": _encoded(0.5, 16_000, "WAV", 33)}  # no transcript line
    for i in range(scale):
        key = f"BAC009S0002W{1000 + i:04d}"
        lines.append(f"{key} 扩展 的 句子 {i}")
        s0002[f"train/S0002/{key}.wav"] = _encoded(1.0, 16_000, "WAV", 300 + i)
    _text(base / "transcript" / "aishell_transcript_v0.8.txt", lines)
    _tar_gz(base / "wav" / "S0002.tar.gz", s0002)
    _tar_gz(base / "wav" / "S0724.tar.gz", {"dev/S0724/BAC009S0724W0150.wav": _encoded(0.9, 16_000, "WAV", 34)})
    _tar_gz(base / "wav" / "S0764.tar.gz", {"test/S0764/BAC009S0764W0200.wav": _encoded(0.7, 16_000, "WAV", 35),
                                            "test/S0764/BAC009S0764W0201.wav": b"garbage, not a wav at all"})
    return Miniature("aishell1", str(root), None, 4 + scale,
                     {"missing_audio": 2, "missing_transcript": 1, "unreadable_audio": 1},
                     {"train": 2 + scale, "dev": 1, "test": 1},
                     {"aishell1/train/BAC009S0002W0122": "而对楼市成交抑制作用最大的限购",
                      "aishell1/dev/BAC009S0724W0150": "开发商在京拿地"})


def make_aishell3(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """``data_aishell3/{train,test}/content.txt`` (characters interleaved with pinyin) + 44.1 kHz WAVs."""
    base = Path(root) / "data_aishell3"
    tr = base / "train"
    lines = ["SSB00050001.wav\t广 guang3 州 zhou1 女 nv3 大 da4 学 xue2 生 sheng1",
             "SSB00050002.wav\t登 deng1 山 shan1 失 shi1 联 lian2",
             "SSB00050003.wav\t没 mei2 有 you3 音 yin1 频 pin2"]
    _write(tr / "wav" / "SSB0005" / "SSB00050001.wav", _encoded(1.0, 44_100, "WAV", 41))
    _write(tr / "wav" / "SSB0005" / "SSB00050002.wav", _encoded(0.8, 44_100, "WAV", 42))
    _write(tr / "wav" / "SSB0005" / "SSB00050009.wav", _encoded(0.5, 44_100, "WAV", 43))  # not in content.txt
    for i in range(scale):
        key = f"SSB0005{1000 + i:04d}"
        lines.append(f"{key}.wav\t扩 kuo4 展 zhan3")
        _write(tr / "wav" / "SSB0005" / f"{key}.wav", _encoded(1.0, 44_100, "WAV", 400 + i))
    _text(tr / "content.txt", lines)
    te = base / "test"
    _text(te / "content.txt", ["SSB06930001.wav\t你 ni3 好 hao3"])
    _write(te / "wav" / "SSB0693" / "SSB06930001.wav", _encoded(0.7, 44_100, "WAV", 44))
    return Miniature("aishell3", str(root), None, 3 + scale, {"missing_audio": 1, "missing_transcript": 1},
                     {"train": 2 + scale, "test": 1},
                     {"aishell3/train/SSB00050001": "广州女大学生", "aishell3/test/SSB06930001": "你好"})


def make_fleurs(root: str | os.PathLike, language: str, scale: int = 0) -> Miniature:
    """``data/<code>/{train,dev,test}.tsv`` (no header row) + ``data/<code>/audio/<split>.tar.gz``; one prompt
    read by two speakers, a row whose audio is missing, a row with too few fields."""
    code = {"zh": "cmn_hans_cn", "ta": "ta_in", "ms": "ms_my"}[language]
    d = Path(root) / "data" / code
    words = {"zh": ["这 是 第一 句", "第二 句", "没有 音频"], "ta": ["இது முதல் வாக்கியம்", "இரண்டாவது", "இல்லை"],
             "ms": ["ini ayat pertama", "ayat kedua", "tiada audio"]}[language]

    def row(pid: int, name: str, text: str) -> str:
        return f"{pid}\t{name}\t{text.capitalize()}.\t{text}\t{len(text)}\t16000\tFEMALE"

    train = [row(1001, "1001a.wav", words[0]), row(1001, "1001b.wav", words[0]), row(1002, "1002a.wav", words[1]),
             row(1003, "1003a.wav", words[2]), "1004\tonly-two-fields"]
    members = {"train/1001a.wav": _encoded(1.0, 16_000, "WAV", 51), "train/1001b.wav": _encoded(1.1, 16_000, "WAV", 52),
               "train/1002a.wav": _encoded(0.8, 16_000, "WAV", 53)}
    for i in range(scale):
        train.append(row(2000 + i, f"s{i}.wav", words[1]))
        members[f"train/s{i}.wav"] = _encoded(1.0, 16_000, "WAV", 500 + i)
    _text(d / "train.tsv", train)
    members["train/orphan.wav"] = _encoded(0.5, 16_000, "WAV", 56)  # in the archive, not in train.tsv
    _tar_gz(d / "audio" / "train.tar.gz", members)
    _text(d / "dev.tsv", [row(1100, "1100a.wav", words[1]), row(1101, "1101a.wav", words[2])])
    _tar_gz(d / "audio" / "dev.tar.gz", {"dev/1100a.wav": _encoded(0.9, 16_000, "WAV", 54),
                                         "dev/1101a.wav": b"RIFF garbage, not audio"})
    _text(d / "test.tsv", [row(1200, "1200a.wav", words[0])])
    _tar_gz(d / "audio" / "test.tar.gz", {"test/1200a.wav": _encoded(0.7, 16_000, "WAV", 55)})
    ds = f"fleurs-{language}"
    norm = words[0].replace(" ", "") if language == "zh" else words[0]
    return Miniature("fleurs", str(root), language, 5 + scale,
                     {"missing_audio": 1, "malformed_manifest": 1, "missing_transcript": 1, "unreadable_audio": 1},
                     {"train": 3 + scale, "dev": 1, "test": 1},
                     {f"{ds}/train/1001a": norm, f"{ds}/train/1001b": norm, f"{ds}/test/1200a": norm})


def make_slr65(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """``line_index_{female,male}.tsv`` + ``ta_in_{female,male}.zip`` (48 kHz WAVs), a member failing its CRC."""
    root = Path(root)
    female = ["taf_00001_0001\tவணக்கம் நண்பர்களே", "taf_00001_0002\tஇன்று நல்ல நாள்", "taf_00002_0001\tநன்றி",
              "taf_00002_0002\tஇதற்கு ஒலி இல்லை"]
    fmembers = {"taf_00001_0001.wav": _encoded(1.0, 48_000, "WAV", 61), "taf_00001_0002.wav": _encoded(0.8, 48_000, "WAV", 62),
                "taf_00002_0001.wav": _encoded(0.9, 48_000, "WAV", 63), "taf_00003_0001.wav": _encoded(0.5, 48_000, "WAV", 64)}
    for i in range(scale):
        female.append(f"taf_00001_{1000 + i:04d}\tவணக்கம் {i}")
        fmembers[f"taf_00001_{1000 + i:04d}.wav"] = _encoded(1.0, 48_000, "WAV", 600 + i)
    _text(root / "line_index_female.tsv", female)
    _zip(root / "ta_in_female.zip", fmembers)
    _text(root / "line_index_male.tsv", ["tam_00010_0001\tகாலை வணக்கம்", "tam_00010_0002\tசேதமடைந்த கோப்பு"])
    _zip(root / "ta_in_male.zip", {"tam_00010_0001.wav": _encoded(1.0, 22_050, "WAV", 65),
                                   "tam_00010_0002.wav": _encoded(1.0, 22_050, "WAV", 66)})
    _corrupt_zip_member(root / "ta_in_male.zip", "tam_00010_0002.wav")
    return Miniature("slr65", str(root), None, 4 + scale,
                     {"missing_audio": 1, "missing_transcript": 1, "unreadable_member": 1}, None,
                     {"slr65/*/taf_00001_0001": "வணக்கம் நண்பர்களே", "slr65/*/tam_00010_0001": "காலை வணக்கம்"})


def make_slr127(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """``{train,test}/audio_files/*.wav`` + one ``trans_files/<stem>.txt`` per clip (one with a BOM and CRLF)."""
    root = Path(root)
    tr = root / "train"
    _write(tr / "audio_files" / "tam_spk1_0001.wav", _encoded(1.0, 16_000, "WAV", 71))
    _text(tr / "trans_files" / "tam_spk1_0001.txt", ["நான் பள்ளிக்கு போனேன்"], bom=True, crlf=True)
    _write(tr / "audio_files" / "tam_spk1_0002.wav", _encoded(0.8, 16_000, "WAV", 72))
    _text(tr / "trans_files" / "tam_spk1_0002.txt", ["மழை பெய்கிறது"])
    _write(tr / "audio_files" / "tam_spk1_0003.wav", _encoded(0.6, 16_000, "WAV", 73))  # no transcript
    _text(tr / "trans_files" / "tam_spk1_0004.txt", ["ஒலி இல்லை"])  # no audio
    for i in range(scale):
        _write(tr / "audio_files" / f"tam_x_{i:04d}.wav", _encoded(1.0, 16_000, "WAV", 700 + i))
        _text(tr / "trans_files" / f"tam_x_{i:04d}.txt", [f"மழை {i}"])
    te = root / "test"
    _write(te / "audio_files" / "tam_spk9_0001.wav", _encoded(0.9, 16_000, "WAV", 74))
    _text(te / "trans_files" / "tam_spk9_0001.txt", ["வீடு பெரியது"])
    return Miniature("slr127", str(root), None, 3 + scale, {"missing_audio": 1, "missing_transcript": 1},
                     {"train": 2 + scale, "test": 1},
                     {"slr127/train/tam_spk1_0001": "நான் பள்ளிக்கு போனேன்", "slr127/test/tam_spk9_0001": "வீடு பெரியது"})


def make_mesolitica(root: str | os.PathLike, scale: int = 0) -> Miniature:
    """Text-only Parquet (``transcription``, ``audio_filename``) + a zip of 24 kHz MP3 segments."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    rows = [("Selamat pagi, semua!", "emilia/podcast-001/0001.mp3"),
            ("Terima kasih banyak.", "emilia/podcast-001/0002.mp3"),
            ("Apa khabar?", "emilia/podcast-002/0001.mp3"),
            ("Tiada audio untuk ini.", "emilia/podcast-002/0404.mp3")]
    members = {"emilia/podcast-001/0001.mp3": _encoded(1.0, 24_000, "MP3", 81),
               "emilia/podcast-001/0002.mp3": _encoded(0.8, 24_000, "MP3", 82),
               "emilia/podcast-002/0001.mp3": _encoded(0.9, 24_000, "MP3", 83),
               "emilia/podcast-003/0001.mp3": _encoded(0.6, 24_000, "MP3", 84)}  # no Parquet row
    for i in range(scale):
        rows.append((f"ayat tambahan {i}", f"emilia/podcast-009/{i:04d}.mp3"))
        members[f"emilia/podcast-009/{i:04d}.mp3"] = _encoded(1.0, 24_000, "MP3", 800 + i)
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"transcription": [r[0] for r in rows], "audio_filename": [r[1] for r in rows]}),
                   root / "data" / "train-00000-of-00001.parquet")
    _zip(root / "malaysian-emilia-mp3-00000.zip", members)
    return Miniature("mesolitica", str(root), None, 3 + scale, {"missing_audio": 1, "missing_transcript": 1}, None,
                     {"mesolitica/*/emilia/podcast-001/0001": "selamat pagi semua"})


# The folder each corpus is unpacked into under one download root, as jobs/configs/corpora/paper.yaml names it.
PAPER_LAYOUT = {
    "librispeech": "librispeech", "nsc": "nsc", "commonvoice": "commonvoice", "aishell1": "aishell1",
    "aishell3": "aishell3", "fleurs": "fleurs", "slr65": "slr65", "slr127": "slr127", "mesolitica": "mesolitica",
}


def make_paper_downloads(root: str | os.PathLike, scale: int = 0) -> list[Miniature]:
    """All twelve corpora (nine downloads) under ``root``, one folder each, in the paper's column order."""
    root = Path(root)
    r = {k: root / v for k, v in PAPER_LAYOUT.items()}
    return [make_librispeech(r["librispeech"], scale), make_nsc(r["nsc"], scale),
            make_commonvoice(r["commonvoice"], "zh", scale), make_aishell1(r["aishell1"], scale),
            make_aishell3(r["aishell3"], scale), make_fleurs(r["fleurs"], "zh", scale),
            make_commonvoice(r["commonvoice"], "ta", scale), make_slr65(r["slr65"], scale),
            make_slr127(r["slr127"], scale), make_fleurs(r["fleurs"], "ta", scale),
            make_mesolitica(r["mesolitica"], scale), make_fleurs(r["fleurs"], "ms", scale)]
