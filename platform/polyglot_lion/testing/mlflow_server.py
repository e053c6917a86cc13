"""A real MLflow tracking server on 127.0.0.1 for tests, its artifacts in a bucket, as a cluster runs it:

    mlflow server --backend-store-uri sqlite:///DB --artifacts-destination s3://BUCKET/mlartifacts

Clients (the training driver, a Serve replica, an evaluation job on any node) log and download artifacts through
the server (``mlflow-artifacts:/`` URIs); the server alone talks to the bucket, with the AWS environment it was
started with (``MLFLOW_S3_ENDPOINT_URL`` for an S3-compatible store).
"""

from __future__ import annotations

import os
import subprocess
import sys

from .servers import free_port, stop_group, wait_for_http

#: MLflow's server-side job runner (huey consumers for its GenAI jobs, such as trace roll-ups and scorers) is off:
#: the platform logs runs, metrics, artifacts and model versions, none of which it runs, and its seven consumer
#: processes cost ~15 CPU-s at every start (measured on 2 cores), in the test that happens to start the server.
JOBS_OFF = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """``with MlflowServer(db, "s3://b/mlartifacts", env=s3.env) as server: server.uri`` — for the block."""

    def __init__(self, backend_db: str, artifacts_destination: str, env: dict[str, str] | None = None,
                 log_path: str | None = None):
        self.backend_db = backend_db
        self.artifacts_destination = artifacts_destination.rstrip("/")
        self.env, self.log_path = dict(env or {}), log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> MlflowServer:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        self.proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.backend_db}", "--artifacts-destination",
             self.artifacts_destination, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            env={**os.environ, **JOBS_OFF, **self.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        what = f"mlflow server on port {self.port}" + (f" (log: {self.log_path})" if self.log_path else "")
        wait_for_http(self.proc, f"{self.uri}/health", what, timeout)
        return self

    def stop(self) -> None:
        stop_group(self.proc)  # its own session: the server and its workers
        self.proc = None

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
