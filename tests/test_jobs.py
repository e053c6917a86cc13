"""The platform on a Ray cluster of real nodes, started with ``ray start`` as users do (``polyglot_lion.testing.
cluster``): a head (token auth on, the default in Ray 2.60) and a second node with a ``node_b`` resource, beside the
test session's Ray instance, the suite's S3 server in their environment.

One training run (issue 26), shared by this module's tests (``two_node_run``): pinned to node B with the store, the
plan and the checkpoints only in a bucket, the model artifacts in the MLflow server's bucket. A job submitted with
``ray job submit`` to the head trains and is stopped right after a checkpoint (the worker dies, fault injection, no
restarts); ``jobs/train.py`` submitted the same way, as a user resubmits a stopped job, resumes it from the bucket
with no repeated step; a driver on the head loads the registered version there and runs a bulk transcription with
its actors on node B, which reads clips from the bucket and writes its transcripts there.

- test_train_job_submitted_to_head_node: what ``ray job submit`` of a training job shows (the job succeeds, its log
  has the progress lines, the MLflow run records the job's id);
- test_training_on_node_b_from_a_bucket_stops_resumes_and_loads_on_the_head: where everything ran and what the
  stop, the resume, the load and the bulk transcription left.
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


# The driver, in two roles. "train": joins the cluster (RAY_ADDRESS; a job's entrypoint has it set), waits for node
# B, trains with a crash injected, and names the nodes its driver and training workers ran on. "load": loads the
# registered version here, on the head, names the nodes of the training workers of the job submitted as SUBMISSION,
# and runs a bulk transcription with its actors on node B. One JSON line of results on stdout.
DRIVER = r"""
import json, os, sys, time
import ray
from ray.util.state import list_actors, list_jobs

role = sys.argv[1]
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
deadline = time.time() + 120
while not ray.cluster_resources().get("node_b"):
    assert time.time() < deadline, "node B did not join"
    time.sleep(0.5)

def worker_nodes(job_id):
    return sorted({a.node_id for a in list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                                           ("job_id", "=", job_id)], detail=True, limit=1000)})

out = {"driver_node": ray.get_runtime_context().get_node_id()}
out["node_b"] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("node_b")]
out["head"] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("head")]
if role == "train":
    from polyglot_lion.config import load_config
    from polyglot_lion.train.run import train

    overrides, crash, config = json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
    try:
        out["result"] = train(load_config(config, overrides), inject_crash_at_step=crash)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:500]
    out["worker_nodes"] = worker_nodes(ray.get_runtime_context().get_job_id())
else:
    from polyglot_lion.inference.bulk import BulkOptions, transcribe_bulk
    from polyglot_lion.inference.source import resolve_model
    from polyglot_lion.model.loading import load_model

    model, tracking, submission, inbox, transcripts = sys.argv[2:7]
    (job,) = [j for j in list_jobs(limit=1000) if j.submission_id == submission]
    out["worker_nodes"] = worker_nodes(job.job_id)
    source = resolve_model(model, tracking)
    load_model(source.path)
    out["loaded"] = source.version
    # bulk transcription with its actors on node B, inputs and transcripts in the bucket
    out["bulk"] = transcribe_bulk(model, [inbox], transcripts,
                                  BulkOptions(tracking_uri=tracking, actor_resources={"node_b": 1}))
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


def _result(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"driver exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _submission_id(proc: subprocess.CompletedProcess) -> str:
    """The id ``ray job submit`` gave the job (``Job 'raysubmit_...' submitted successfully``)."""
    import re

    found = re.search(r"Job '(raysubmit_\w+)' submitted successfully", proc.stdout)
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    return found.group(1)


def _printed_summary(log: str) -> dict:
    """The summary ``polyglot-lion train`` prints (indented JSON) at the end of its job's log."""
    start = log.rfind('\n{\n  "')
    assert start >= 0, log[-3000:]
    return json.JSONDecoder().raw_decode(log[start + 1:])[0]


@pytest.fixture(scope="module")
def two_node_run(cluster, corpus_store, s3_server, mlflow_s3):
    """The module's one training run (the module docstring): stopped in a submitted job, resumed by
    ``jobs/train.py`` submitted as a job, the registered version loaded on the head and a bulk transcription on
    node B. What each step printed and returned, for the tests to judge."""
    from polyglot_lion.storage import resolve

    bucket = s3_server.create_bucket(f"two-nodes-{uuid.uuid4().hex[:8]}")
    store, plan = stage_inputs(*corpus_store, bucket)
    name = f"two-nodes-{uuid.uuid4().hex[:6]}"
    overrides = {"data.store": store, "data.plan": plan, "run.output_dir": f"{bucket}/runs", "run.name": "two",
                 "tracking.uri": mlflow_s3.uri, "tracking.experiment": name, "tracking.registered_model": name,
                 "scaling.num_workers": 1, "scaling.worker_resources": {"node_b": 1}, "scaling.max_failures": 0,
                 "train.max_steps": 4, "train.checkpoint_every": 2, "train.log_every": 1, "train.dev_every": 0,
                 "data.max_batch_size": 8, "data.bucket_window": 32, "data.featurize_actors": 0}
    overrides = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in overrides.items()]
    run = {"bucket": bucket, "store": store, "tracking": mlflow_s3.uri, "experiment": name}

    # a job trains and its worker dies right after checkpoint 2
    stop = submit(cluster.dashboard, cluster.env, sys.executable, "-c", DRIVER, "train", json.dumps(overrides), "2",
                  CONFIG)
    run.update(stop_job=stop, stopped=_result(stop))
    # the stopped job submitted again, as a user does it: jobs/train.py resumes it from the bucket
    resume = submit(cluster.dashboard, cluster.env, sys.executable, f"{REPO}/jobs/train.py", "--config", CONFIG,
                    *overrides)
    assert resume.returncode == 0 and "succeeded" in resume.stdout, resume.stdout[-3000:] + resume.stderr[-3000:]
    run.update(resume_job=resume, resumed=_printed_summary(resume.stdout))
    # on the head: the registered version loads; a bulk transcription on node B of clips in the bucket
    wavs = sorted((Path(corpus_store[0]).parent / "corpus").rglob("*.wav"))[:4]
    for wav in wavs:
        resolve(f"{bucket}/inbox/{wav.name}").write_bytes(wav.read_bytes())
    mv = run["resumed"]["model_version"]
    load = subprocess.run([sys.executable, "-c", DRIVER, "load", f"models:/{mv['name']}/{mv['version']}",
                           mlflow_s3.uri, _submission_id(resume), f"{bucket}/inbox", f"{bucket}/transcripts"],
                          env=dict(cluster.env, RAY_ADDRESS=cluster.gcs_address), cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    run.update(loaded=_result(load), wavs=len(wavs))
    return run


@pytest.mark.ray
def test_train_job_submitted_to_head_node(two_node_run):
    from mlflow.tracking import MlflowClient

    for job in (two_node_run["stop_job"], two_node_run["resume_job"]):
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout
    out = two_node_run["resume_job"].stdout  # jobs/train.py's log
    assert "step 3/4 (75%) loss " in out and "step 4/4 (100%) loss " in out  # progress in the log
    client = MlflowClient(tracking_uri=two_node_run["tracking"])
    runs = client.search_runs([client.get_experiment_by_name(two_node_run["experiment"]).experiment_id],
                              "tags.`polyglot_lion.run_name` = 'two'")
    assert len(runs) == 1 and runs[0].data.metrics["loss"] > 0  # the resumed job continued the run
    assert runs[0].data.tags["ray_job_id"].startswith("raysubmit_")  # the job id is recorded on the run


@pytest.mark.ray
@pytest.mark.slow
def test_training_on_node_b_from_a_bucket_stops_resumes_and_loads_on_the_head(two_node_run):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.storage import resolve
    from polyglot_lion.testing.faults import CRASH_MARKER

    bucket = two_node_run["bucket"]
    assert list_partitions(two_node_run["store"], "train")  # the store read from the bucket
    stopped = two_node_run["stopped"]  # the worker died right after checkpoint 2
    assert "error" in stopped, stopped
    assert stopped["worker_nodes"] == stopped["node_b"] and stopped["driver_node"] in stopped["head"]
    assert resolve(f"{bucket}/runs/two/{CRASH_MARKER}").exists()
    assert [c.name for c in resolve(f"{bucket}/runs/_ray/two").list() if c.name.startswith("checkpoint_")]

    result, loaded = two_node_run["resumed"], two_node_run["loaded"]
    assert "error" not in loaded, loaded
    assert result["metrics"]["step"] == 4 and result["latest_checkpoint"].startswith(f"{bucket}/runs/_ray/two/")
    assert loaded["worker_nodes"] == loaded["node_b"]  # the resumed job's worker
    client = MlflowClient(tracking_uri=two_node_run["tracking"])
    steps = [m.step for m in client.get_metric_history(result["mlflow_run_id"], "loss")]
    assert sorted(steps) == [1, 2, 3, 4]  # resumed at step 2 from the bucket: no step repeated or skipped
    assert loaded["loaded"] == result["model_version"]["version"]  # the registered version loads on the head
    assert loaded["driver_node"] in loaded["head"]
    assert not os.path.exists(f"{REPO}/runs/two")
    # bulk transcription: its actors on node B, the transcripts in the bucket
    assert loaded["bulk"]["transcribed"] == two_node_run["wavs"] and loaded["bulk_nodes"] == loaded["node_b"]
    assert len(resolve(f"{bucket}/transcripts/transcripts.jsonl").read_text().splitlines()) == two_node_run["wavs"]
