"""A real S3-compatible server on 127.0.0.1 for tests and benchmarks: moto in server mode, in a subprocess.

Nothing is patched: the platform talks HTTP to it through pyarrow's S3 client (and MLflow through boto3), as it
would to MinIO or AWS. ``S3Server.env`` is the AWS environment a process needs to reach it; ``activate()``
puts it into ``os.environ`` (before Ray starts, so Ray's workers inherit it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

from .servers import free_port, stop_group, wait_for_http

FAKE_KEY = "polyglot-lion-test"
FAKE_SECRET = "polyglot-lion-test-secret"


class S3Server:
    """``with S3Server() as s3: s3.create_bucket("b")`` — a moto server for the block's duration."""

    def __init__(self, port: int | None = None, log_path: str | None = None):
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": FAKE_KEY,
                "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def start(self, timeout: float = 60.0) -> S3Server:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_http(self.proc, f"{self.endpoint}/moto-api/", f"moto server on port {self.port}", timeout)
        return self

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextmanager
    def activate(self):
        """Put ``env`` into ``os.environ`` for the block (and restore what was there)."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _client(self):
        import boto3  # a dev dependency (moto brings it); only the tests create buckets

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=FAKE_KEY,
                            aws_secret_access_key=FAKE_SECRET, region_name="us-east-1")

    def create_bucket(self, name: str) -> str:
        self._client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def deny_all(self, bucket: str) -> None:
        """A bucket policy that denies every action: an 'access denied' bucket for the error tests."""
        import json

        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                  "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
        self._client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
