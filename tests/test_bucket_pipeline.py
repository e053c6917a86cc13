"""The demo's steps with every location in a bucket (issue 26): prepare -> balance -> train (resumed once) ->
register -> evaluate -> bulk transcribe -> serve one request, the store, plan, run, evaluation, bulk inputs and
outputs in a bucket of the suite's S3 server, MLflow's artifacts in another (an MLflow server with
``--artifacts-destination s3://``). Nothing is written to the local disk but temporary files: the working folder
stays empty. Training on Ray Train workers in a bucket, across two nodes, is in test_two_nodes.py."""

import json
import os
import uuid
from pathlib import Path

import pytest

from polyglot_lion.config import load_config
from polyglot_lion.storage import resolve

CONFIG = str(Path(__file__).resolve().parents[1] / "jobs/configs/qwen3_asr/tiny_cpu.yaml")


@pytest.mark.ray
@pytest.mark.serve
def test_the_demo_steps_with_every_location_in_a_bucket(tmp_path, corpus_store, bucket, mlflow_s3, monkeypatch):
    import httpx
    from mlflow.tracking import MlflowClient
    from ray import serve

    from polyglot_lion.data.balance import corpus_from_table, make_plan, write_plan
    from polyglot_lion.data.prepare import ImportSpec, PrepareOptions, prepare
    from polyglot_lion.data.store import list_partitions, read_metadata
    from polyglot_lion.evaluation.evaluate import evaluate
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk
    from polyglot_lion.inference.source import resolve_model
    from polyglot_lion.serving.app import build_app
    from polyglot_lion.testing.servers import free_port
    from polyglot_lion.tracking.registry import promote
    from polyglot_lion.train.run import train

    corpus = Path(corpus_store[0]).parent / "corpus"  # the inputs of prepare stay local (a download folder)
    specs = json.loads((Path(corpus_store[0]).parent / "specs.json").read_text())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # every default local folder would be here
    monkeypatch.setenv("POLYGLOT_LION_CACHE", str(tmp_path / "cache"))  # the model cache a node keeps
    db, store, plan = mlflow_s3.uri, f"{bucket}/store", f"{bucket}/plans/two-stage"

    # prepare and balance
    metas = prepare([ImportSpec.from_dict(s) for s in specs], store, PrepareOptions())
    assert sum(m["utterances"] for m in metas) > 0
    assert {p.split for p in list_partitions(store)} == {"train", "dev", "test"}
    meta = read_metadata(store, "train", columns=["id", "language", "dataset", "duration_s"])
    groups, durations = corpus_from_table(meta)
    write_plan(make_plan(groups, "two-stage", 0), durations, meta, plan)
    assert resolve(f"{plan}/summary.json").exists()

    # train 20 steps in two calls (the second resumes from the bucket), register
    name = f"bucket-demo-{uuid.uuid4().hex[:6]}"
    over = [f"data.store={store}", f"data.plan={plan}", f"run.output_dir={bucket}/runs", "run.name=demo",
            f"tracking.uri={db}", f"tracking.experiment={name}", f"tracking.registered_model={name}",
            "scaling.num_workers=0", "data.featurize_actors=0", "data.max_batch_size=8", "data.bucket_window=32",
            "train.lr=0.001", "train.log_every=5", "train.checkpoint_every=10", "train.dev_every=0"]
    first = train(load_config(CONFIG, over + ["train.max_steps=10"]))
    with pytest.warns(UserWarning, match="resuming at step 10"):
        result = train(load_config(CONFIG, over + ["train.max_steps=20"]))
    assert result["metrics"]["step"] == 20 and result["mlflow_run_id"] == first["mlflow_run_id"]
    steps = [m.step for m in MlflowClient(tracking_uri=db).get_metric_history(result["mlflow_run_id"], "loss")]
    assert sorted(steps) == [5, 10, 15, 20]  # no step repeated after the resume
    assert result["latest_checkpoint"].startswith(f"{bucket}/runs/demo/")
    assert resolve(f"{bucket}/runs/demo/config.json").exists()
    assert resolve(f"{bucket}/runs/demo/base_model/config.json").exists()
    assert resolve_model(result["checkpoint"]).path != result["checkpoint"]  # a checkpoint URI: a temporary copy
    mv = result["model_version"]
    assert mv["source"].startswith("mlflow-artifacts:/")  # the server put the files in its bucket
    uri = f"models:/{promote(mv['name'], str(mv['version']), 'champion', db)['name']}@champion"

    # evaluate into the bucket
    ev = evaluate(uri, store, out_dir=f"{bucket}/eval", tracking_uri=db, progress=False)
    assert len(ev["benchmarks"]) == 12 and resolve(f"{bucket}/eval/results.md").exists()

    # bulk-transcribe clips uploaded to the bucket, the transcripts written there
    wavs = sorted(corpus.rglob("*.wav"))[:6]
    for wav in wavs:
        resolve(f"{bucket}/inbox/{wav.parent.name}/{wav.name}").write_bytes(wav.read_bytes())
    bulk = transcribe_bulk(uri, [f"{bucket}/inbox"], f"{bucket}/transcripts", BulkOptions(tracking_uri=db))
    assert bulk["transcribed"] == len(wavs) and not sum(bulk["errors"].values())
    rows = resolve(f"{bucket}/transcripts/transcripts.jsonl").read_text().splitlines()
    assert len(rows) == len(wavs)

    # serve the registered model and send one request
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"model": uri, "tracking_uri": db}), name="bucket-demo", route_prefix="/",
                  blocking=False)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions", timeout=180,
                       files={"file": (wavs[0].name, wavs[0].read_bytes(), "audio/wav")},
                       data={"model": "polyglot-lion", "response_format": "verbose_json"})
        assert r.status_code == 200, r.text
        assert r.json()["duration"] > 0
    finally:
        serve.shutdown()

    assert os.listdir(cwd) == []  # no run folder, no store, no outputs on the local disk
