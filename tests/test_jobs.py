"""The platform on a Ray cluster of real nodes, started with ``ray start`` as users do (``polyglot_lion.testing.
cluster``): a head (token auth on, the default in Ray 2.60) and a second node with a ``node_b`` resource, beside the
test session's Ray instance, the suite's S3 server in their environment.

- a training job submitted with ``ray job submit`` to the head;
- (issue 26) training pinned to node B with the store, the plan and the checkpoints only in a bucket, the model
  artifacts in the MLflow server's bucket: the job is stopped right after a checkpoint (the worker dies, fault
  injection, no restarts), resumed from the bucket with no repeated step, and the registered version loads on the
  head, where the driver runs; then a bulk transcription with its actors on node B reads clips from the bucket
  and writes its transcripts there.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from polyglot_lion.testing.cluster import LocalCluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CONFIG = f"{REPO}/jobs/configs/qwen3_asr/tiny_cpu.yaml"


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    """A head (2 CPUs, a ``head`` resource) and node B (1 CPU, ``node_b``), for this module's tests."""
    cache = tmp_path_factory.mktemp("model-cache")
    with LocalCluster(head_cpus=2, workers=[{"num_cpus": 1, "resources": {"node_b": 1}}],
                      env={**s3_server.env, "POLYGLOT_LION_CACHE": str(cache)}) as c:
        yield c


def submit(address: str, env: dict, *entrypoint: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([f"{BIN}/ray", "job", "submit", "--address", address, "--", *entrypoint],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
def test_train_job_submitted_to_head_node(cluster, corpus_store, tmp_path):
    from mlflow.tracking import MlflowClient

    address, env = cluster.dashboard, cluster.env
    store, plan = corpus_store
    db = f"sqlite:///{tmp_path}/mlflow.db"
    out = submit(address, env, sys.executable, f"{REPO}/jobs/train.py", "--config",
                 f"{REPO}/jobs/configs/qwen3_asr/tiny_cpu.yaml", f"data.store={store}", f"data.plan={plan}",
                 f"run.output_dir={tmp_path}/runs", "run.name=submitted", f"tracking.uri={db}",
                 "train.max_steps=2", "train.log_every=1", "train.checkpoint_every=2", "data.max_batch_size=8",
                 "data.bucket_window=32", "scaling.cpus_per_worker=0.5", "train.dev_every=0",
                 "data.featurize_actors=0")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout
    assert "step 1/2 (50%) loss " in out.stdout and "step 2/2 (100%) loss " in out.stdout  # progress in the log
    client = MlflowClient(tracking_uri=db)
    runs = client.search_runs([client.get_experiment_by_name("polyglot-lion").experiment_id],
                              "tags.`polyglot_lion.run_name` = 'submitted'")
    assert len(runs) == 1 and runs[0].data.metrics["loss"] > 0
    assert runs[0].data.tags["ray_job_id"].startswith("raysubmit_")  # the job id is recorded on the run


# The driver: joins the cluster (RAY_ADDRESS), waits for node B, trains (or resumes), and with --load loads the
# registered version here, on the head. One JSON line of results on stdout.
DRIVER = r"""
import json, os, sys, time
import ray
from polyglot_lion.config import load_config
from polyglot_lion.train.run import train

overrides, crash, load = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "load"
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
deadline = time.time() + 120
while not ray.cluster_resources().get("node_b"):
    assert time.time() < deadline, "node B did not join"
    time.sleep(0.5)
out = {"driver_node": ray.get_runtime_context().get_node_id()}
try:
    result = train(load_config(sys.argv[4], overrides), inject_crash_at_step=crash)
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"[:500]
else:
    out.update(result=result)
from ray.util.state import list_actors
out["worker_nodes"] = sorted({a.node_id for a in list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                                                       ("job_id", "=", ray.get_runtime_context().get_job_id())],
                                                              detail=True, limit=1000)})
out["node_b"] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("node_b")]
out["head"] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("head")]
if load and "result" in out:
    from polyglot_lion.inference.source import resolve_model
    from polyglot_lion.model.loading import load_model
    mv = out["result"]["model_version"]
    source = resolve_model(f"models:/{mv['name']}/{mv['version']}", out["result"]["tracking_uri"])
    load_model(source.path)
    out["loaded"] = source.version
    # bulk transcription with its actors on node B, inputs and transcripts in the bucket
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk
    inbox, transcripts = sys.argv[5], sys.argv[6]
    out["bulk"] = transcribe_bulk(f"models:/{mv['name']}/{mv['version']}", [inbox], transcripts,
                                  BulkOptions(tracking_uri=out["result"]["tracking_uri"],
                                              actor_resources={"node_b": 1}))
    out["bulk_nodes"] = sorted({a.node_id for a in list_actors(filters=[("job_id", "=", ray.get_runtime_context().get_job_id())],
                                                                 detail=True, limit=1000)
                                if "TranscribeAndWrite" in a.class_name})
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


def stage_inputs(store: str, plan: str, bucket: str) -> tuple[str, str]:
    """The store and plan in the bucket: written locally by ``prepare`` / ``balance`` (the shared fixture) and
    uploaded as they are. The one place this test knows where they come from."""
    from polyglot_lion.folders import upload_folder

    return str(upload_folder(store, f"{bucket}/store")), str(upload_folder(plan, f"{bucket}/plan"))


def _drive(address: str, env: dict, overrides: dict, crash: int | None, load: bool, bulk: tuple = ()) -> dict:
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(overrides), json.dumps(crash),
                           "load" if load else "-", CONFIG, *bulk], env=dict(env, RAY_ADDRESS=address), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"driver exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.ray
@pytest.mark.slow
def test_training_on_node_b_from_a_bucket_stops_resumes_and_loads_on_the_head(
        cluster, corpus_store, bucket, mlflow_s3, tmp_path):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.storage import resolve
    from polyglot_lion.testing.faults import CRASH_MARKER

    address, env = cluster.gcs_address, cluster.env
    store, plan = stage_inputs(*corpus_store, bucket)
    assert list_partitions(store, "train")  # the store read from the bucket
    name = f"two-nodes-{uuid.uuid4().hex[:6]}"
    overrides = {"data.store": store, "data.plan": plan, "run.output_dir": f"{bucket}/runs", "run.name": "two",
                 "tracking.uri": mlflow_s3.uri, "tracking.experiment": name, "tracking.registered_model": name,
                 "scaling.num_workers": 1, "scaling.worker_resources": {"node_b": 1}, "scaling.max_failures": 0,
                 "train.max_steps": 4, "train.checkpoint_every": 2, "train.log_every": 1, "train.dev_every": 0,
                 "data.max_batch_size": 8, "data.bucket_window": 32, "data.featurize_actors": 0}
    overrides = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in overrides.items()]
    tracking = mlflow_s3.uri

    stopped = _drive(address, env, overrides, crash=2, load=False)  # the worker dies right after checkpoint 2
    assert "error" in stopped, stopped
    assert stopped["worker_nodes"] == stopped["node_b"] and stopped["driver_node"] in stopped["head"]
    assert resolve(f"{bucket}/runs/two/{CRASH_MARKER}").exists()
    assert [c.name for c in resolve(f"{bucket}/runs/_ray/two").list() if c.name.startswith("checkpoint_")]

    wavs = sorted((Path(corpus_store[0]).parent / "corpus").rglob("*.wav"))[:4]
    for wav in wavs:
        resolve(f"{bucket}/inbox/{wav.name}").write_bytes(wav.read_bytes())
    resumed = _drive(address, env, overrides, crash=None, load=True,
                     bulk=(f"{bucket}/inbox", f"{bucket}/transcripts"))
    assert "error" not in resumed, resumed
    result = resumed["result"]
    assert result["metrics"]["step"] == 4 and result["latest_checkpoint"].startswith(f"{bucket}/runs/_ray/two/")
    assert resumed["worker_nodes"] == resumed["node_b"]
    client = MlflowClient(tracking_uri=tracking)
    steps = [m.step for m in client.get_metric_history(result["mlflow_run_id"], "loss")]
    assert sorted(steps) == [1, 2, 3, 4]  # resumed at step 2 from the bucket: no step repeated or skipped
    assert resumed["loaded"] == result["model_version"]["version"]  # the registered version loads on the head
    assert not os.path.exists(f"{REPO}/runs/two")
    # bulk transcription: its actors on node B, the transcripts in the bucket
    assert resumed["bulk"]["transcribed"] == len(wavs) and resumed["bulk_nodes"] == resumed["node_b"]
    assert len(resolve(f"{bucket}/transcripts/transcripts.jsonl").read_text().splitlines()) == len(wavs)
