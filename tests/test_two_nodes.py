"""Two Ray nodes on this machine (issue 26): a head and a second raylet with a ``node_b`` resource, both started with
``ray start`` (token auth on, as Ray 2.60 does for a head), the AWS environment of the test S3 server in theirs.
The driver runs on the head; the training worker is pinned to node B (``scaling.worker_resources``); the store,
the plan and the checkpoints are only in the bucket, the model artifacts in the MLflow server's bucket. The job is
stopped right after a checkpoint (the worker dies, fault injection, no restarts), resumed from the bucket with no
repeated step, and the registered version loads on the head.

Both nodes get their own ports and are stopped by signalling ``ray start --block`` (never ``ray stop``, which would
also stop the test session's Ray)."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CONFIG = f"{REPO}/jobs/configs/qwen3_asr/tiny_cpu.yaml"

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
out["worker_nodes"] = sorted({a.node_id for a in list_actors(filters=[("class_name", "=", "RayTrainWorker")],
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
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stop(proc: subprocess.Popen, grace: float) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def two_nodes(s3_server, tmp_path):
    """(gcs address, env) of a head (2 CPUs, a ``head`` resource, the dashboard for the state API) and node B
    (1 CPU, ``node_b``), their environment with the S3 server's AWS variables and the token."""
    (gcs, dash, client, *ports) = _free_ports(13)
    env = dict(os.environ, **s3_server.env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               RAY_DATA_DISABLE_PROGRESS_BARS="1", POLYGLOT_LION_CACHE=str(tmp_path / "model-cache"))
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="r2n", dir="/tmp")
    common = ["--block", "--disable-usage-stats", "--object-store-memory=150000000"]

    def node_ports(p):
        return [f"--dashboard-agent-listen-port={p[0]}", f"--dashboard-agent-grpc-port={p[1]}",
                f"--runtime-env-agent-port={p[2]}", f"--metrics-export-port={p[3]}", f"--node-manager-port={p[4]}"]

    head = subprocess.Popen(
        [f"{BIN}/ray", "start", "--head", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         f"--ray-client-server-port={client}", "--num-cpus=2", '--resources={"head": 1}', f"--temp-dir={temp}",
         *node_ports(ports[:5]), *common],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    nodes = [head]
    try:
        deadline = time.time() + 120
        while True:  # the dashboard answers (401 without the token) once the head is up
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.time() > deadline or head.poll() is not None:
                    pytest.fail(f"ray start --head did not come up (exit {head.poll()})")
                time.sleep(1)
        nodes.append(subprocess.Popen(
            [f"{BIN}/ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", '--resources={"node_b": 1}',
             *node_ports(ports[5:10]), *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        yield f"127.0.0.1:{gcs}", env
    finally:
        for proc in reversed(nodes):
            _stop(proc, 15)


def stage_inputs(store: str, plan: str, bucket: str) -> tuple[str, str]:
    """The store and plan in the bucket: written locally by ``prepare`` / ``balance`` (the shared fixture) and
    uploaded as they are. The one place this test knows where they come from."""
    from polyglot_lion.folders import upload_folder

    return str(upload_folder(store, f"{bucket}/store")), str(upload_folder(plan, f"{bucket}/plan"))


def _drive(address: str, env: dict, overrides: dict, crash: int | None, load: bool) -> dict:
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(overrides), json.dumps(crash),
                           "load" if load else "-", CONFIG], env=dict(env, RAY_ADDRESS=address), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"driver exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.ray
@pytest.mark.slow
def test_training_on_node_b_from_a_bucket_stops_resumes_and_loads_on_the_head(
        two_nodes, corpus_store, bucket, mlflow_s3, tmp_path):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.storage import resolve
    from polyglot_lion.testing.faults import CRASH_MARKER

    address, env = two_nodes
    store, plan = stage_inputs(*corpus_store, bucket)
    if not list_partitions(store, "train"):
        pytest.skip("reading a store in a bucket comes with the data side of issue 26")
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

    resumed = _drive(address, env, overrides, crash=None, load=True)
    assert "error" not in resumed, resumed
    result = resumed["result"]
    assert result["metrics"]["step"] == 4 and result["latest_checkpoint"].startswith(f"{bucket}/runs/_ray/two/")
    assert resumed["worker_nodes"] == resumed["node_b"]
    client = MlflowClient(tracking_uri=tracking)
    steps = [m.step for m in client.get_metric_history(result["mlflow_run_id"], "loss")]
    assert sorted(steps) == [1, 2, 3, 4]  # resumed at step 2 from the bucket: no step repeated or skipped
    assert resumed["loaded"] == result["model_version"]["version"]  # the registered version loads on the head
    assert not os.path.exists(f"{REPO}/runs/two")
