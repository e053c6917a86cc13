"""The listers are pure (no audio decoded): what they find and what they reject while listing."""

import pytest

from polyglot_lion.data.importers import FormatOptions, list_csv, list_jsonl, list_kaldi, list_librispeech
from polyglot_lion.testing import make_csv_corpus, make_jsonl_corpus, make_kaldi_dir, make_librispeech_tree


def reasons(rejects):
    return sorted(r["reason"] for r in rejects)


def test_jsonl(tmp_path):
    path, _ = make_jsonl_corpus(tmp_path)
    items, rejects = list_jsonl(path)
    assert reasons(rejects) == ["malformed_manifest", "malformed_manifest", "undecodable_text"]
    first = items[0]
    assert first["key"] == "audio/ok1" and first["raw_text"] == "Hello, World!"  # Qwen prefix stripped
    assert first["audio_path"] == str(tmp_path / "audio" / "ok1.wav")  # relative to the manifest
    assert items[1]["speaker"] == "s1" and items[1]["audio_path"].endswith("ok2.flac")  # audio_filepath
    assert items[2]["raw_text"] == "你好 世界。"
    assert any(i["key"] == "ok1-again" for i in items)  # explicit id wins
    assert all(r["source"].startswith(path + ":") for r in rejects)


def test_csv_common_voice(tmp_path):
    path, _ = make_csv_corpus(tmp_path)
    items, rejects = list_csv(path)
    assert reasons(rejects) == ["malformed_manifest"]
    assert [i["key"] for i in items] == ["cv_ta_1", "cv_ta_2", "cv_ta_3", "cv_ta_404"]
    assert items[0]["audio_path"] == str(tmp_path / "clips" / "cv_ta_1.wav")
    assert items[1]["raw_text"] == '"நன்றி" என்றார்.'  # TSV quotes are text, not quoting
    assert items[0]["speaker"] == "spk1"


def test_csv_options_and_missing_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,transcript\na.wav,hello\n")
    items, _ = list_csv(str(tmp_path / "m.csv"), FormatOptions(audio_column="file", text_column="transcript",
                                                                clips_dir="/data/clips"))
    assert items[0]["audio_path"] == "/data/clips/a.wav" and items[0]["raw_text"] == "hello"
    with pytest.raises(ValueError, match=r"column\(s\) \['path', 'sentence'\] not found.*--audio-column"):
        list_csv(str(tmp_path / "m.csv"))


def test_kaldi(tmp_path):
    path, _ = make_kaldi_dir(tmp_path)
    items, rejects = list_kaldi(path)
    assert reasons(rejects) == ["malformed_manifest", "missing_audio", "undecodable_text", "unsupported_entry"]
    assert [i["key"] for i in items] == ["BAC009S0002W0122", "BAC009S0002W0123"]
    assert items[1]["audio_path"] == str(tmp_path / "wav" / "BAC009S0002W0123.wav")  # relative to the dir
    assert items[0]["speaker"] == "S0002"
    piped = next(r for r in rejects if r["reason"] == "unsupported_entry")
    assert "piped" in piped["detail"] and piped["source"].endswith("wav.scp:3")


def test_kaldi_needs_its_files(tmp_path):
    with pytest.raises(ValueError, match="needs 'wav.scp'"):
        list_kaldi(str(tmp_path))


def test_librispeech(tmp_path):
    path, _ = make_librispeech_tree(tmp_path)
    items, rejects = list_librispeech(path)
    assert rejects == []  # the missing .flac is found when decoding
    assert {i["key"] for i in items} == {"103-1240-0000", "103-1240-0001", "103-1240-0002", "1034-121119-0000"}
    assert all(i["speaker"] in ("103", "1034") for i in items)
    with pytest.raises(ValueError, match="trans.txt"):
        list_librispeech(str(tmp_path / "103" / "1240" / "nothing"))
