"""Ray job entrypoints submitted with `ray job submit` to a real head node (`ray start --head`), as users do.

The head runs on its own ports and temp dir, beside the test session's Ray instance, with Ray's token
authentication on (the default in Ray 2.60), and is stopped by signalling `ray start --block` (never `ray stop`,
which would also kill the session's instance).
"""

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

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def ray_head():
    gcs, dash, client, agent, agent_grpc, rt_env, metrics = _free_ports(7)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               RAY_DATA_DISABLE_PROGRESS_BARS="1")
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    proc = subprocess.Popen(
        [f"{BIN}/ray", "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", f"--temp-dir={temp}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={rt_env}", f"--metrics-export-port={metrics}",
         "--object-store-memory=200000000", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # 401 without the token: the dashboard is up
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"ray start --head did not come up (exit {proc.poll()})")
            time.sleep(1)
    yield address, env
    proc.send_signal(signal.SIGTERM)
    try:  # 2-3 s when idle; after a job it waits out the full grace (30 s), then is killed all the same
        proc.wait(3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def submit(address: str, env: dict, *entrypoint: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([f"{BIN}/ray", "job", "submit", "--address", address, "--", *entrypoint],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
def test_train_job_submitted_to_head_node(ray_head, corpus_store, tmp_path):
    from mlflow.tracking import MlflowClient

    address, env = ray_head
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
