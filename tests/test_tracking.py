"""Tracking: the store checked before a job starts, and MLflow runs that always end with a status (a real SQLite
MLflow store; the SIGTERM case in a real subprocess)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from mlflow.tracking import MlflowClient

from polyglot_lion.tracking import check_tracking, run_status


def _new_run(uri: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t") or None
    exp_id = exp.experiment_id if exp else client.create_experiment("t")
    return client.create_run(exp_id).info.run_id


def test_runs_end_finished_failed_or_killed_with_their_end_time(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    ok, bad, interrupted = _new_run(uri), _new_run(uri), _new_run(uri)
    with run_status(uri, ok):
        client.log_metric(ok, "loss", 1.0)
    with pytest.raises(RuntimeError, match="out of memory"):
        with run_status(uri, bad):
            raise RuntimeError("out of memory")
    with pytest.raises(KeyboardInterrupt):
        with run_status(uri, interrupted):
            raise KeyboardInterrupt
    runs = {r: client.get_run(r) for r in (ok, bad, interrupted)}
    assert [runs[r].info.status for r in (ok, bad, interrupted)] == ["FINISHED", "FAILED", "KILLED"]
    assert all(runs[r].info.end_time for r in runs)
    assert runs[bad].data.tags["error"] == "RuntimeError: out of memory"
    assert "out of memory" in (tmp_path / "mlflow.db").parent.joinpath(
        client.download_artifacts(bad, "error.txt", str(tmp_path))).read_text()
    with run_status(uri, bad):  # a resumed run runs again, then ends with its new status
        assert client.get_run(bad).info.status == "RUNNING"
    assert client.get_run(bad).info.status == "FINISHED"


def test_sigterm_ends_the_run_killed_and_the_process_exits_143(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id = _new_run(uri)
    script = textwrap.dedent(f"""
        import time
        from polyglot_lion.tracking import run_status
        with run_status({uri!r}, {run_id!r}):
            print("running", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time and "RunKilled" in run.data.tags["error"]


def test_unreachable_tracking_server_fails_fast_naming_it_before_anything_is_written(tmp_path, capsys):
    """The probe: tracking.uri=http://127.0.0.1:9 failed after 4 min 49 s with 80 lines, having written
    runs/<name>/base_model. Now: one check, a one-line error, nothing written, Ray not started."""
    import ray

    from polyglot_lion import cli
    from polyglot_lion.config import load_config
    from polyglot_lion.train.run import train

    ray_before = ray.is_initialized()
    overrides = [f"run.output_dir={tmp_path}/runs", "run.name=probe", "tracking.uri=http://127.0.0.1:9",
                 f"data.store={tmp_path}/store", f"data.plan={tmp_path}/plan"]
    cfg = load_config("jobs/configs/qwen3_asr/tiny_cpu.yaml", overrides, check_paths=False)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"tracking.uri http://127.0.0.1:9: the MLflow tracking server did not "
                                         r"answer within 5 s"):
        train(cfg)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "runs").exists()
    assert ray.is_initialized() == ray_before
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"  # MLflow's own retries bounded for the job
    with pytest.raises(ValueError, match="folder .*nowhere does not exist"):
        check_tracking(f"sqlite:///{tmp_path}/nowhere/mlflow.db")
    capsys.readouterr()
    (tmp_path / "store" / "data").mkdir(parents=True)  # paths that pass the config's check: the tracking check
    (tmp_path / "plan").mkdir()                         # is what stops the job
    (tmp_path / "plan" / "plan.parquet").write_bytes(b"")
    assert cli.main(["train", "--config", "jobs/configs/qwen3_asr/tiny_cpu.yaml", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polyglot-lion train: error: tracking.uri http://127.0.0.1:9"), err


def test_a_tracking_server_that_answers_is_reachable():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)  # any answer: the server is there
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_tracking(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
