"""The transcriber (parsing, chunking, repetition guard, batching) and bulk transcription with Ray Data."""

import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from polyglot_lion.inference.transcriber import fix_repetitions, language_name, parse_output, split_points
from polyglot_lion.testing import audio_bytes, write_audio


@pytest.mark.parametrize("raw,expected", [
    ("language English<asr_text>hello world", ("en", "hello world")),
    ("language Chinese<asr_text>你好", ("zh", "你好")),
    ("language Tamil<asr_text>வணக்கம்", ("ta", "வணக்கம்")),
    ("language None<asr_text>saya suka", (None, "saya suka")),
    ("language Malay<asr_text>", ("ms", "")),
    ("  language   malay <asr_text> apa khabar ", ("ms", "apa khabar")),
    ("language Klingon<asr_text>qapla", ("klingon", "qapla")),
    ("hello without any prefix", (None, "hello without any prefix")),
    ("", (None, "")),
])
def test_parse_output(raw, expected):
    assert parse_output(raw) == expected


def test_language_names():
    assert language_name("ta") == "Tamil" and language_name("Malay") == "Malay" and language_name("ZH") == "Chinese"
    with pytest.raises(ValueError, match="language 'fr' is not supported; allowed: en"):
        language_name("fr")


def test_split_points_cut_in_the_quietest_window():
    rate = 16000
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, rate * 25).astype(np.float32)
    x[int(8.2 * rate):int(8.4 * rate)] = 0.0  # a pause 1.8 s before the 10 s boundary
    x[int(17.0 * rate):int(17.2 * rate)] *= 0.01  # a quiet stretch before the second boundary
    pts = split_points(x, chunk_s=10.0, search_s=3.0)
    assert pts[0][0] == 0 and pts[-1][1] == len(x)
    assert all(a[1] == b[0] for a, b in zip(pts, pts[1:]))  # contiguous, nothing lost or repeated
    assert all(e - s <= 10 * rate for s, e in pts)
    assert 8.2 * rate <= pts[0][1] <= 8.4 * rate  # cut inside the pause
    assert 17.0 * rate <= pts[1][1] <= 17.2 * rate
    assert split_points(x[: 5 * rate], chunk_s=10.0) == [(0, 5 * rate)]
    silent = np.zeros(rate * 30, np.float32)  # no quiet spot stands out: still bounded chunks
    assert all(e - s <= 10 * rate for s, e in split_points(silent, 10.0))


def test_fix_repetitions():
    assert fix_repetitions("a" * 50, threshold=5) == "aaaaa"
    assert fix_repetitions("ok " + "la " * 40 + "end", threshold=4) == "ok " + "la " * 4 + "end"
    assert fix_repetitions("哈哈哈", threshold=5) == "哈哈哈"
    assert fix_repetitions("normal text stays", threshold=3) == "normal text stays"


def test_transcriber_batches_chunks_and_keeps_order(tiny_checkpoint):
    from polyglot_lion.inference.transcriber import Transcriber

    tr = Transcriber.load(tiny_checkpoint, batch_size=3, chunk_s=4.0)
    rng = np.random.default_rng(1)
    audios = [rng.normal(0, 0.1, int(16000 * s)).astype(np.float32) for s in (1.0, 9.0, 0.3, 2.0)]
    out = tr.transcribe(audios)
    assert [r.chunks for r in out] == [1, 3, 1, 1]
    assert [round(r.duration_s, 2) for r in out] == [1.0, 9.0, 0.3, 2.0]
    assert all(r.seconds > 0 and r.rtf > 0 for r in out)
    # the same clip alone or in a batch gives the same text (greedy, left padding is masked)
    alone = tr.transcribe([audios[3]])[0]
    assert alone.text == out[3].text
    forced = tr.transcribe([audios[0]], language="ta")[0]
    assert forced.language == "ta"
    assert tr.describe()["device"] == "cpu"


def _make_inputs(root):
    """A nested folder and an archive, each with good, corrupt, empty and non-audio files."""
    folder = root / "calls"
    write_audio(folder / "a.wav", 1.0)
    write_audio(folder / "day2" / "b.flac", 1.5, fmt="FLAC")
    write_audio(folder / "day2" / "deep" / "c.wav", 0.7, rate=8000, channels=2)
    (folder / "day2" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio")
    arch = root / "batch.tar.gz"
    with tarfile.open(arch, "w:gz") as t:
        for name, data in [("x/good.wav", audio_bytes(1.2)), ("x/bad.wav", b"garbage" * 10), ("x/zero.wav", b""),
                           ("readme.md", b"# hi")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    z = root / "more.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("m1.wav", audio_bytes(0.8, seed=3))
        f.writestr("m2.bin", b"\x00\x01")
    manifest = root / "list.jsonl"
    manifest.write_text(json.dumps({"id": "man-1", "audio": "calls/a.wav"}) + "\n" + "{broken\n"
                        + json.dumps({"id": "man-2", "audio": "nowhere.wav"}) + "\n")
    return [str(folder), str(arch), str(z), str(manifest)]


def test_list_inputs_accounts_for_everything(tmp_path):
    from polyglot_lion.inference.bulk import list_inputs

    items = list_inputs(_make_inputs(tmp_path))
    ids = sorted(r["id"] for r in items)
    assert len(ids) == len(set(ids)) == 6 + 4 + 2 + 3
    assert "batch.tar.gz/x/good.wav" in ids and "more.zip/m2.bin" in ids and "list.jsonl:2" in ids
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_inputs([str(tmp_path / "nope")])


@pytest.mark.ray
def test_bulk_transcription_every_input_once_and_resume(tmp_path, tiny_checkpoint, ray_session):
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk

    inputs = _make_inputs(tmp_path)
    out = tmp_path / "out"
    first = transcribe_bulk(tiny_checkpoint, inputs, str(out), BulkOptions(limit=6, batch_size=4))
    assert first["outputs"] == 6
    full = transcribe_bulk(tiny_checkpoint, inputs, str(out), BulkOptions(batch_size=4))  # resumes: 9 left
    table = pq.read_table(out / "transcripts.parquet").to_pylist()
    ids = [r["id"] for r in table]
    assert len(ids) == len(set(ids)) == 15 == full["inputs"] == full["outputs"]
    lines = (out / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == 15
    by_id = {r["id"]: r for r in table}
    ok = [i for i, r in by_id.items() if r["error"] is None]
    assert sorted(ok) == sorted(["calls/a.wav", "calls/day2/b.flac", "calls/day2/deep/c.wav",
                                 "batch.tar.gz/x/good.wav", "more.zip/m1.wav", "man-1"])
    assert all(isinstance(by_id[i]["text"], str) and by_id[i]["duration_s"] > 0 for i in ok)
    assert by_id["calls/day2/deep/c.wav"]["duration_s"] == pytest.approx(0.7, abs=0.01)
    assert by_id["calls/empty.wav"]["error"].startswith("empty_audio")
    assert by_id["calls/day2/corrupt.wav"]["error"].startswith("unreadable_audio")
    assert by_id["calls/notes.txt"]["error"].startswith("unreadable_audio")
    assert by_id["batch.tar.gz/x/zero.wav"]["error"].startswith("empty_audio")
    assert by_id["list.jsonl:2"]["error"].startswith("malformed_manifest")
    assert by_id["man-2"]["error"].startswith("missing_audio")
    assert sum(full["errors"].values()) == 9
    again = transcribe_bulk(tiny_checkpoint, inputs, str(out), BulkOptions())  # nothing left to do
    assert again["outputs"] == 15 and len(pq.read_table(out / "transcripts.parquet")) == 15


def test_bulk_batch_without_errors_is_transcribed(tmp_path, tiny_checkpoint):
    """Ray Data hands over an all-null error column (every row decoded) as float32 NaNs, not Nones."""
    from polyglot_lion.inference.bulk import TranscribeAndWrite

    samples = [np.sin(np.arange(n) / 20.0).astype(np.float32).tobytes() for n in (8000, 12000)]
    batch = {"id": np.array(["a", "b"]), "source": np.array(["a.wav", "b.wav"]), "samples": np.array(samples),
             "duration_s": np.array([0.5, 0.75]), "error": np.full(2, np.nan, np.float32)}
    out = TranscribeAndWrite(tiny_checkpoint, str(tmp_path), None, 4, None, max_new_tokens=3)(batch)
    assert out["error"] == [None, None]
    rows = pq.read_table(next((tmp_path / "parts").glob("part-*.parquet"))).to_pylist()
    assert [r["id"] for r in rows] == ["a", "b"] and all(isinstance(r["text"], str) for r in rows)


@pytest.mark.ray
def test_evaluate_tiny_checkpoint_writes_results_and_mlflow(tmp_path, tiny_checkpoint, corpus_store, capsys):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.cli import main

    store, _ = corpus_store
    db = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=db)
    client.create_registered_model("tiny-eval")
    client.create_model_version("tiny-eval", tiny_checkpoint)
    client.set_registered_model_alias("tiny-eval", "champion", "1")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "models:/tiny-eval@champion", "--store", store, "--out", str(out),
                 "--tracking-uri", db, "--benchmarks", "librispeech,A1,cv-ta,fleurs-ms", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert json.loads((out / "results.json").read_text())["benchmarks"] == res["benchmarks"]
    assert set(res["benchmarks"]) == {"librispeech", "aishell1", "cv-ta", "fleurs-ms"}
    a1 = res["benchmarks"]["aishell1"]
    assert a1["metric"] == "cer" and a1["benchmark"] == "A1" and a1["utterances"] == 2 and a1["s_per_sample"] > 0
    assert res["benchmarks"]["librispeech"]["metric"] == "wer"
    assert set(res["languages"]) == {"en", "zh", "ta", "ms"}
    assert res["model"]["name"] == "tiny-eval" and res["model"]["version"] == "1"
    md = (out / "results.md").read_text()
    assert "| Polyglot-Lion-0.6B (published) | 2.67 |" in md and "| **tiny-eval v1** |" in md
    assert "| model | LS | NSC | CVzh | A1 |" in md
    assert (out / "results.png").stat().st_size > 5000
    assert len((out / "hypotheses.jsonl").read_text().splitlines()) == 8
    run = client.get_run(res["mlflow"]["run_id"])
    assert run.data.tags["model_version"] == "1" and "aishell1.cer" in run.data.metrics
    tags = client.get_model_version("tiny-eval", "1").tags
    assert tags["eval.test.aishell1"] == f"{a1['error_rate']:.2f}" and "eval.test.average" in tags
    # a benchmark the store does not have is named in the error
    assert main(["evaluate", "--model", tiny_checkpoint, "--store", store, "--benchmarks", "nope",
                 "--no-mlflow"]) == 2


def test_transcribe_cli_rejects_bad_language(tmp_path, tiny_checkpoint, capsys):
    from polyglot_lion.cli import main

    write_audio(tmp_path / "in" / "a.wav")
    assert main(["transcribe", "--model", tiny_checkpoint, "--input", str(tmp_path / "in"), "--out",
                 str(tmp_path / "o"), "--language", "fr"]) == 2
    assert "language 'fr' is not supported" in capsys.readouterr().err


def test_is_looping():
    from polyglot_lion.inference.transcriber import is_looping

    assert is_looping([5] * 12) and not is_looping([5] * 11)
    assert is_looping([1, 2, 3] + [7, 8] * 4) and not is_looping([1, 2, 3] + [7, 8] * 3)
    assert is_looping(list(range(20)) + [1, 2, 3, 4, 5, 6, 7, 8] * 4)
    assert not is_looping(list(range(40)))


def test_decode_keeps_the_asr_text_separator(tiny_checkpoint):
    """The tiny tokenizer marks <asr_text> special; skip_special_tokens would delete it and break parsing."""
    from polyglot_lion.inference.transcriber import Transcriber

    tr = Transcriber.load(tiny_checkpoint)
    tok = tr.processor.tokenizer
    ids = tok("language None<asr_text>hello world<|im_end|>", add_special_tokens=False)["input_ids"]
    ids += [tok.pad_token_id] * 3
    assert tr.decode(ids) == "language None<asr_text>hello world"
    assert parse_output(tr.decode(ids)) == (None, "hello world")


@pytest.mark.ray
def test_datasets_outside_the_twelve_are_scored_too(tmp_path, tiny_checkpoint, corpus_store):
    import shutil

    from polyglot_lion.evaluation.evaluate import evaluate

    store, _ = corpus_store
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    shutil.move(copy / "data" / "test" / "en" / "nsc", copy / "data" / "test" / "en" / "callcentre")
    res = evaluate(tiny_checkpoint, str(copy), benchmarks=["callcentre", "LS"], out_dir=str(tmp_path / "e"),
                   max_utterances=1, log_to_mlflow=False, progress=False)
    assert set(res["benchmarks"]) == {"callcentre", "librispeech"}
    assert res["benchmarks"]["callcentre"]["benchmark"] is None and res["benchmarks"]["callcentre"]["metric"] == "wer"
    md = (tmp_path / "e" / "results.md").read_text()
    assert "| Fms | callcentre | Avg |" in md and "| callcentre | en | WER |" in md


@pytest.mark.ray
def test_evaluation_skips_and_reports_an_unreadable_test_utterance(tmp_path, tiny_checkpoint, corpus_store):
    """A damaged test utterance is left out of the score and said (results, markdown, MLflow), not fatal; a set
    with nothing readable is listed as skipped; a store with nothing readable at all is an error."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.evaluation.evaluate import evaluate

    store, _ = corpus_store
    copy = str(tmp_path / "store")
    shutil.copytree(store, copy)
    parts = {p.dataset: p for p in list_partitions(copy, "test")}

    def corrupt(path: str, n: int) -> list[str]:
        table = pq.read_table(path)
        audio = table["audio"].to_pylist()
        audio[:n] = [b"not audio"] * min(n, len(audio))
        pq.write_table(table.set_column(table.schema.get_field_index("audio"), "audio",
                                        pa.array(audio, table.schema.field("audio").type)), path)
        return sorted(table["id"].to_pylist()[:n])

    lost = corrupt(parts["librispeech"].files[0], 1)
    for f in parts["nsc"].files:
        corrupt(f, 10_000)  # the whole set
    db = f"sqlite:///{tmp_path}/mlflow.db"
    res = evaluate(tiny_checkpoint, copy, benchmarks=["LS", "nsc", "aishell1"], out_dir=str(tmp_path / "e"),
                   tracking_uri=db, progress=False)
    ls = res["benchmarks"]["librispeech"]
    assert ls["skipped_utterances"] == 1 and res["skipped"]["librispeech"]["utterances"] == 1
    assert res["skipped"]["librispeech"]["examples"][0]["id"] == lost[0]
    assert res["skipped"]["librispeech"]["examples"][0]["reason"].startswith("unreadable_audio: ")
    assert ls["utterances"] == sum(pq.read_metadata(f).num_rows for f in parts["librispeech"].files) - 1 >= 1
    assert "nsc" not in res["benchmarks"] and res["skipped"]["nsc"]["utterances"] >= 1
    assert res["benchmarks"]["aishell1"]["skipped_utterances"] == 0
    md = (tmp_path / "e" / "results.md").read_text()
    assert "librispeech: 1 utterance(s) not scored" in md and "the whole set, so it is not in the tables" in md
    metrics = MlflowClient(tracking_uri=db).get_run(res["mlflow"]["run_id"]).data.metrics
    assert metrics["librispeech.skipped_utterances"] == 1 and "nsc.wer" not in metrics

    for p in parts.values():
        for f in p.files:
            corrupt(f, 10_000)
    with pytest.raises(ValueError, match="no utterance of 'test' in .* could be decoded"):
        evaluate(tiny_checkpoint, copy, log_to_mlflow=False, progress=False)


def _decode_all(items, **kw) -> dict:
    """read_and_decode over work items in a thread, with a deadline: a FIFO read would block forever."""
    import threading

    from polyglot_lion.inference.bulk import read_and_decode

    batch = {k: [it.get(k, 0) for it in items] for k in ("id", "source", "kind", "path", "member", "nth")}
    got: dict = {}

    def run():
        got["pieces"] = list(read_and_decode(batch, **kw))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "read_and_decode blocked (a FIFO read?)"
    pieces = got["pieces"]
    rows = {}
    for piece in pieces:
        for i, err, dur in zip(piece["id"], piece["error"], piece["duration_s"]):
            assert i not in rows, f"{i} has two rows"
            rows[i] = (err, dur)
    return {"rows": rows, "pieces": len(pieces)}


def test_special_files_links_and_duplicate_members_each_get_their_own_row(tmp_path):
    """The probe's inputs: a FIFO and /dev/zero in a manifest, a FIFO and a link out of the folder, a tar with a
    symlink, a hard link and a duplicate name, a zip with a duplicate name, the bomb FLAC, a too-large member."""
    import zipfile as zf

    from polyglot_lion.inference.bulk import list_inputs
    from polyglot_lion.testing.hostile import bomb_flac, make_fifo, tar_with_links_and_duplicates

    folder = tmp_path / "calls"
    write_audio(folder / "a.wav", 1.0)
    make_fifo(folder / "pipe.wav")
    (tmp_path / "outside.wav").write_bytes(audio_bytes(0.5))
    os.symlink(tmp_path / "outside.wav", folder / "escape.wav")
    os.symlink(folder / "a.wav", folder / "inside.wav")  # a link that stays inside the folder is read
    (folder / "bomb.flac").write_bytes(bomb_flac())
    make_fifo(tmp_path / "fifo2.wav")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [{"id": "good", "audio": "calls/a.wav"},
                                                         {"id": "fifo", "audio": str(tmp_path / "fifo2.wav")},
                                                         {"id": "zero", "audio": "/dev/zero"}]) + "\n")
    tar = tar_with_links_and_duplicates(tmp_path / "t.tar", {"one.wav": audio_bytes(1.0), "two.wav": audio_bytes(0.6)},
                                        duplicate=("one.wav", audio_bytes(1.4)))
    with zf.ZipFile(tmp_path / "z.zip", "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("d.wav", audio_bytes(0.8))
        z.writestr("d.wav", audio_bytes(1.2))
        z.writestr("big.wav", audio_bytes(20.0))
    items = list_inputs([str(folder), str(manifest), tar, str(tmp_path / "z.zip")])
    # big.wav (640 KB) is above 0.5 MB, the bomb (430 KB) is not; its 865 MiB of samples are above the default 512
    out = _decode_all(items, max_input_mb=0.5)
    rows = out["rows"]
    assert len(rows) == len(items) == 4 + 1 + 3 + 5 + 3, sorted(rows)
    reason = {i: (err or "").split(":")[0] for i, (err, _) in rows.items()}
    assert reason["calls/pipe.wav"] == "not_a_regular_file" and "a FIFO" in rows["calls/pipe.wav"][0]
    assert reason["calls/escape.wav"] == "outside_input_root"
    assert reason["calls/bomb.flac"] == "over_decode_limits" and "--max-decoded-mb" in rows["calls/bomb.flac"][0]
    assert rows["calls/inside.wav"] == (None, pytest.approx(1.0))
    assert reason["fifo"] == "not_a_regular_file"
    assert reason["zero"] == "not_a_regular_file" and "a character device" in rows["zero"][0]
    assert rows["good"][0] is None
    assert reason["t.tar/link.wav"] == reason["t.tar/hard.wav"] == "not_a_regular_file"
    # duplicate names: each its own audio, in archive order
    assert rows["t.tar/one.wav"] == (None, pytest.approx(1.0)) and rows["t.tar/one.wav#1"] == (None, pytest.approx(1.4))
    assert rows["z.zip/d.wav"] == (None, pytest.approx(0.8)) and rows["z.zip/d.wav#1"] == (None, pytest.approx(1.2))
    assert reason["z.zip/big.wav"] == "member_too_large"


def test_decoded_samples_are_passed_on_in_bounded_pieces(tmp_path):
    from polyglot_lion.inference.bulk import list_inputs

    for i in range(6):
        write_audio(tmp_path / "in" / f"{i}.wav", 1.0)  # 64 KB of samples each
    items = list_inputs([str(tmp_path / "in")])
    out = _decode_all(items, max_batch_mb=0.1)
    assert len(out["rows"]) == 6 and out["pieces"] == 3


@pytest.mark.ray
def test_bulk_job_survives_special_files_and_retry_errors_replaces_the_error_row(tmp_path, tiny_checkpoint,
                                                                                 ray_session):
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk
    from polyglot_lion.testing.hostile import make_fifo

    write_audio(tmp_path / "a.wav", 1.0)
    make_fifo(tmp_path / "pipe.wav")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "audio": "a.wav"}, {"id": "fifo", "audio": "pipe.wav"}, {"id": "zero", "audio": "/dev/zero"},
        {"id": "late", "audio": "late.wav"}]) + "\n")  # late.wav is not copied yet
    out = tmp_path / "out"
    first = transcribe_bulk(tiny_checkpoint, [str(manifest)], str(out), BulkOptions(batch_size=4, max_new_tokens=3))
    assert first["outputs"] == 4 and first["errors"] == {"not_a_regular_file": 2, "missing_audio": 1}
    write_audio(tmp_path / "late.wav", 0.7)
    again = transcribe_bulk(tiny_checkpoint, [str(manifest)], str(out), BulkOptions(max_new_tokens=3))
    assert again["errors"]["missing_audio"] == 1  # a plain rerun keeps what is done, errors included
    retried = transcribe_bulk(tiny_checkpoint, [str(manifest)], str(out),
                              BulkOptions(max_new_tokens=3, retry_errors=True))
    rows = {r["id"]: r for r in pq.read_table(out / "transcripts.parquet").to_pylist()}
    assert len(rows) == 4 == retried["outputs"] and retried["errors"] == {"not_a_regular_file": 2}
    assert rows["late"]["error"] is None and rows["late"]["duration_s"] == pytest.approx(0.7, abs=0.01)
    assert len((out / "transcripts.jsonl").read_text().splitlines()) == 4
