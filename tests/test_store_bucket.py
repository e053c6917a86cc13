"""The data side in a bucket (a real S3-compatible server, moto, started by the suite): the store's commit protocol,
prepare / balance / evaluate / bulk transcription with every location in a bucket, an import killed halfway, and
locations that fail before Ray starts."""

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import polyglot_lion
from polyglot_lion import storage
from polyglot_lion.cli import main
from polyglot_lion.data.prepare import PARQUET_WRITE_ARGS, ImportSpec, PrepareOptions, prepare
from polyglot_lion.data.schema import UTTERANCE_SCHEMA
from polyglot_lion.data.stats import store_stats
from polyglot_lion.data.store import (
    COMMIT_FILE,
    list_partitions,
    new_generation,
    partition_location,
    publish_partition,
    read_metadata,
    store_fingerprint,
    write_shard,
)
from polyglot_lion.testing import audio_bytes, make_jsonl_corpus, make_librispeech_tree, write_audio

OPTS = PrepareOptions(max_duration_s=2.5, batch_size=4)


def _rows(n: int, tag: str) -> pa.Table:
    return pa.Table.from_pylist([{"id": f"toy/train/{tag}{i}", "dataset": "toy", "language": "en", "split": "train",
                                  "audio": b"", "duration_s": 1.0, "text": f"{tag} {i}", "raw_text": f"{tag} {i}",
                                  "speaker": None, "source": f"m.jsonl:{i}"} for i in range(n)],
                                schema=UTTERANCE_SCHEMA)


def _publish(store, tag: str, n: int, language: str = "en") -> None:
    """One generation of toy/train written and committed by hand (what prepare does, without Ray)."""
    gen = new_generation(store, "train", language, "toy")
    write_shard(gen.join("part-a.parquet"), _rows(n, tag), **PARQUET_WRITE_ARGS)
    gen.join("_rejects.jsonl").write_text("")
    publish_partition(store, gen, "train", language, "toy", ["part-a.parquet"], {"utterances": n, "tag": tag})


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_commit_switches_generations_and_prunes_the_old(where, tmp_path, request):
    store = str(tmp_path / "store") if where == "local" else f"{request.getfixturevalue('bucket')}/store"
    _publish(store, "old", 3)
    folder = partition_location(store, "train", "en", "toy")
    first = list_partitions(store)[0]
    uncommitted = new_generation(store, "train", "en", "toy")  # an import that died before its commit
    write_shard(uncommitted.join("part-x.parquet"), _rows(5, "dead"))
    assert read_metadata(store)["text"].to_pylist() == ["old 0", "old 1", "old 2"]  # the dead shard is not read
    _publish(store, "new", 2)
    (p,) = list_partitions(store)
    assert p.generation != first.generation and p.meta == {"utterances": 2, "tag": "new"}
    assert read_metadata(store)["id"].to_pylist() == ["toy/train/new0", "toy/train/new1"]
    assert sorted(e.name for e in folder.list()) == [COMMIT_FILE, p.generation]  # both older generations pruned
    # moved to another language: the newer commit is the partition, the older one is deleted
    _publish(store, "ms", 1, language="ms")
    assert [(q.language, q.meta["tag"]) for q in list_partitions(store)] == [("ms", "ms")]
    assert not folder.exists() or not folder.list()


def test_store_written_before_generations_is_still_read(tmp_path):
    folder = tmp_path / "store" / "data" / "train" / "en" / "toy"
    folder.mkdir(parents=True)
    pq.write_table(_rows(2, "legacy"), folder / "part-00000.parquet")
    (folder / "_meta.json").write_text(json.dumps({"dataset": "toy", "utterances": 2}, indent=2))
    (folder / "_rejects.jsonl").write_text(json.dumps({"source": "x", "reason": "missing_audio", "detail": ""}) + "\n")
    (p,) = list_partitions(tmp_path / "store")
    assert p.generation is None and p.meta["utterances"] == 2 and p.rejects()[0]["reason"] == "missing_audio"
    assert read_metadata(tmp_path / "store").num_rows == 2 and store_fingerprint(tmp_path / "store")
    _publish(tmp_path / "store", "new", 1)  # re-imported: moved to the generation layout, the old files gone
    assert sorted(os.listdir(folder)) == [COMMIT_FILE, list_partitions(tmp_path / "store")[0].generation]


# --- Ray: prepare, balance, evaluate and bulk transcription in a bucket ------------------------------------------

@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    jsonl, _ = make_jsonl_corpus(root / "jsonl")
    ls, _ = make_librispeech_tree(root / "ls")
    return [ImportSpec("jsonl", jsonl, "toy-jsonl", "en", "train"),
            ImportSpec("librispeech", ls, "librispeech", "en", "test")]


@pytest.fixture(scope="module")
def bucket_store(s3_server, ray_session, sources, tmp_path_factory):
    """The same imports into a bucket and onto a local disk."""
    import uuid

    store = f"{s3_server.create_bucket(f'store-{uuid.uuid4().hex[:8]}')}/store"
    local = tmp_path_factory.mktemp("local") / "store"
    assert main(["prepare", "--specs", _specs_file(sources, local.parent), "--store", store, "--max-duration", "2.5",
                 "--batch-size", "4", "--json"]) == 0
    prepare(sources, str(local), OPTS)
    return store, str(local)


def _specs_file(specs, folder: Path) -> str:
    path = folder / "specs.json"
    path.write_text(json.dumps([{"format": s.format, "input": s.input, "dataset": s.dataset, "language": s.language,
                                 "split": s.split} for s in specs]))
    return str(path)


@pytest.mark.ray
def test_prepare_into_a_bucket_reads_back_what_a_local_store_holds(bucket_store):
    store, local = bucket_store
    cols = ["id", "text", "duration_s", "audio", "source"]
    remote, here = (read_metadata(s, columns=cols).sort_by("id").to_pylist() for s in (store, local))
    assert remote == here and len(remote) == 2 + 3
    assert store_stats(store) == store_stats(local)
    for p, q in zip(list_partitions(store), list_partitions(local)):
        assert p.rejects() == q.rejects() and p.meta["utterances"] == q.meta["utterances"]
        assert all(f.startswith(p.location.path + "/" + p.generation + "/") for f in p.files)
        assert p.location.join(COMMIT_FILE).is_file()


@pytest.mark.ray
def test_balance_plan_in_a_bucket_streams_the_bucket_store(bucket_store, ray_session, capsys):
    from polyglot_lion.data.balance import check_plan_against_store, read_balanced, read_plan

    store, _ = bucket_store
    plan = store.rsplit("/", 1)[0] + "/plans/natural"
    assert main(["balance", "--store", store, "--strategy", "natural", "--out", plan, "--json",
                 "--plot", f"{plan}/mix.png"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 2
    assert read_plan(plan).num_rows == 2 and storage.resolve(f"{plan}/mix.png").size() > 1000
    assert check_plan_against_store(store, plan) == {}
    rows = read_balanced(store, plan, columns=["id"]).take_all()  # Ray Data read tasks get the bucket's filesystem
    assert sorted(r["id"] for r in rows) == sorted(read_metadata(store, "train")["id"].to_pylist())


@pytest.mark.ray
def test_evaluation_outputs_in_a_bucket(bucket_store, tiny_checkpoint):
    from polyglot_lion.evaluation.evaluate import evaluate

    store, _ = bucket_store
    out = store.rsplit("/", 1)[0] + "/eval/tiny"
    res = evaluate(tiny_checkpoint, store, out_dir=out, max_utterances=1, log_to_mlflow=False, progress=False)
    assert set(res["benchmarks"]) == {"librispeech"} and res["files"]["md"] == f"{out}/results.md"
    assert sorted(f.name for f in storage.resolve(out).files()) == ["hypotheses.jsonl", "results.json", "results.md",
                                                                    "results.png"]
    assert json.loads(storage.resolve(f"{out}/results.json").read_text())["benchmarks"] == res["benchmarks"]


@pytest.mark.ray
def test_bulk_transcription_from_and_to_a_bucket_resumes_without_duplicates(bucket, tiny_checkpoint, ray_session,
                                                                            tmp_path, monkeypatch):
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk

    inbox = storage.resolve(f"{bucket}/inbox")
    inbox.join("calls", "a.wav").write_bytes(audio_bytes(0.6, seed=1))
    inbox.join("calls", "day2", "b.flac").write_bytes(audio_bytes(0.5, fmt="FLAC", seed=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in (("x/good.wav", audio_bytes(0.4, seed=3)), ("x/bad.wav", b"not audio" * 20)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    inbox.join("batch.tar.gz").write_bytes(buf.getvalue())
    inbox.join("list.jsonl").write_text(json.dumps({"id": "man-1", "audio": "calls/a.wav"}) + "\n"
                                        + json.dumps({"id": "man-2", "audio": "nowhere.wav"}) + "\n")
    inputs = [f"{bucket}/inbox/calls", f"{bucket}/inbox/batch.tar.gz", f"{bucket}/inbox/list.jsonl"]
    out = f"{bucket}/transcripts"
    monkeypatch.chdir(tmp_path)  # nothing may be written to the local disk (besides temporary files)
    assert transcribe_bulk(tiny_checkpoint, inputs, out, BulkOptions(limit=3, batch_size=4))["outputs"] == 3
    full = transcribe_bulk(tiny_checkpoint, inputs, out, BulkOptions(batch_size=4))
    parts = storage.resolve(f"{out}/parts").files()
    again = transcribe_bulk(tiny_checkpoint, inputs, out, BulkOptions(batch_size=4))  # nothing left to do
    assert storage.resolve(f"{out}/parts").files() == parts  # no part written twice
    loc = storage.resolve(f"{out}/transcripts.parquet")
    rows = {r["id"]: r for r in pq.read_table(loc.path, filesystem=loc.fs).to_pylist()}
    assert len(rows) == 6 == full["outputs"] == again["outputs"] == full["inputs"]
    assert sorted(i for i, r in rows.items() if r["error"] is None) == [
        "batch.tar.gz/x/good.wav", "calls/a.wav", "calls/day2/b.flac", "man-1"]
    assert rows["batch.tar.gz/x/bad.wav"]["error"].startswith("unreadable_audio")
    assert rows["man-2"]["error"].startswith("missing_audio")
    assert rows["calls/a.wav"]["source"] == f"{bucket}/inbox/calls/a.wav"
    assert len(storage.resolve(f"{out}/transcripts.jsonl").read_text().splitlines()) == 6
    assert list(tmp_path.iterdir()) == []


# --- an import killed halfway ------------------------------------------------------------------------------------

def _manifest(root: Path, n: int, tag: str) -> str:
    lines = []
    for i in range(n):
        write_audio(root / f"{tag}{i}.wav", 0.5, seed=i)
        lines.append(json.dumps({"audio": f"{tag}{i}.wav", "id": f"{tag}{i}", "text": f"{tag} clip number {i}"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return str(root / "train.jsonl")


@pytest.mark.ray
def test_import_killed_halfway_into_a_bucket_leaves_the_previous_generation(bucket, ray_session, tmp_path):
    """A real prepare process, joined to the session's Ray, killed once its new generation has shards in the bucket:
    the committed generation is still read, whole, and nothing of the killed one is; the next import prunes it."""
    store = f"{bucket}/store"
    old_manifest = _manifest(tmp_path / "old", 3, "old")
    prepare([ImportSpec("jsonl", old_manifest, "toy", "en", "train")], store, OPTS)
    (before,) = list_partitions(store)
    old_rows = read_metadata(store).sort_by("id").to_pylist()
    assert len(old_rows) == 3

    new_manifest = _manifest(tmp_path / "new", 80, "new")
    code = ("import sys; from polyglot_lion.cli import main; sys.exit(main(sys.argv[1:]))")
    platform_dir = str(Path(polyglot_lion.__file__).parents[1])
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               PYTHONPATH=os.pathsep.join([platform_dir, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, "prepare", "--format", "jsonl", "--input", new_manifest,
                             "--dataset", "toy", "--language", "en", "--split", "train", "--store", store,
                             "--batch-size", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    folder = partition_location(store, "train", "en", "toy")
    deadline, partial = time.monotonic() + 120, []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [f for f in folder.files(".parquet", recursive=True) if before.generation not in f.path]
            if len(partial) >= 2:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
    assert len(partial) >= 2, f"the import never wrote its new generation (exit {proc.returncode}):\n{output[-3000:]}"

    (after,) = list_partitions(store)
    assert after.generation == before.generation and after.files == before.files
    assert read_metadata(store).sort_by("id").to_pylist() == old_rows  # complete, and nothing of the new import
    shards = ray_session.data.read_parquet(after.files, filesystem=after.fs, columns=["id"]).take_all()
    assert sorted(r["id"] for r in shards) == [r["id"] for r in old_rows]
    assert folder.join(partial[0].parent.name).is_dir()  # the killed generation is there, just not committed

    prepare([ImportSpec("jsonl", old_manifest, "toy", "en", "train")], store, OPTS)  # the next import prunes it
    (again,) = list_partitions(store)
    assert sorted(e.name for e in folder.list()) == [COMMIT_FILE, again.generation]
    assert read_metadata(store).sort_by("id")["id"].to_pylist() == [r["id"] for r in old_rows]


# --- locations checked before Ray starts -------------------------------------------------------------------------

def test_missing_or_denied_bucket_fails_before_ray_starts_naming_it(s3_server, bucket, tmp_path, monkeypatch,
                                                                   capsys, tiny_checkpoint):
    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("polyglot_lion.cli.data.init_ray", no_ray)
    monkeypatch.setattr("polyglot_lion.inference.bulk.init_ray", no_ray)
    manifest, _ = make_jsonl_corpus(tmp_path / "c")
    denied = f"{s3_server.create_bucket(bucket.removeprefix('s3://') + '-denied')}"
    s3_server.deny_all(denied.removeprefix("s3://"))
    missing = "s3://no-such-bucket-26a"
    prepare_args = ["prepare", "--format", "jsonl", "--input", manifest, "--dataset", "toy", "--language", "en",
                    "--split", "train"]
    cases = [
        (prepare_args + ["--store", f"{missing}/store"],
         f"--store {missing}/store: bucket 'no-such-bucket-26a' does not exist"),
        (prepare_args + ["--store", f"{denied}/store"], f"--store {denied}/store: cannot write to it"),
        (["balance", "--store", f"{missing}/store", "--out", str(tmp_path / "plan")],
         f"--store {missing}/store: bucket"),
        (["balance", "--store", str(tmp_path), "--out", f"{denied}/plan"], f"--out {denied}/plan: cannot"),
        (["evaluate", "--model", tiny_checkpoint, "--store", f"{denied}/store", "--no-mlflow"],
         f"--store {denied}/store: cannot read"),
        (["transcribe", "--model", tiny_checkpoint, "--input", manifest, "--out", f"{missing}/out"],
         f"--out {missing}/out: bucket"),
        (["transcribe", "--model", tiny_checkpoint, "--input", f"{denied}/inbox", "--out", str(tmp_path / "o")],
         f"--input {denied}/inbox: cannot read"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
