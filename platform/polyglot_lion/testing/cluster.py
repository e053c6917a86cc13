"""A Ray cluster of real nodes on this machine for tests: a head started with ``ray start --head`` (token auth on,
as Ray 2.60 does for a head) and optional worker nodes with their own resources (e.g. ``{"node_b": 1}``), each on
its own ports and temp dir beside the test session's Ray instance.

Nodes are stopped by signalling their ``ray start --block`` process (never ``ray stop``, which would also stop the
session's instance)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from .servers import free_ports, wait_for_http

BIN = os.path.dirname(sys.executable)


def _node_ports() -> list[str]:
    p = free_ports(5)
    return [f"--dashboard-agent-listen-port={p[0]}", f"--dashboard-agent-grpc-port={p[1]}",
            f"--runtime-env-agent-port={p[2]}", f"--metrics-export-port={p[3]}", f"--node-manager-port={p[4]}"]


class LocalCluster:
    """``with LocalCluster(env=extra_env, workers=[{"num_cpus": 1, "resources": {"node_b": 1}}]) as c:`` —
    ``c.gcs_address`` for drivers (``RAY_ADDRESS``), ``c.dashboard`` for ``ray job submit``, ``c.env`` (with the
    token) for any client process."""

    def __init__(self, head_cpus: int = 2, workers: list[dict] | None = None, env: dict[str, str] | None = None,
                 object_store_bytes: int = 150_000_000):
        self.head_cpus, self.workers = head_cpus, workers or []
        self.env = dict(os.environ, **(env or {}), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
                        RAY_DATA_DISABLE_PROGRESS_BARS="1")
        self.env.pop("RAY_ADDRESS", None)
        self.common = ["--block", "--disable-usage-stats", f"--object-store-memory={object_store_bytes}"]
        self.procs: list[subprocess.Popen] = []

    def _start(self, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([f"{BIN}/ray", "start", *args, *_node_ports(), *self.common], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 120.0) -> LocalCluster:
        gcs, dash, client = free_ports(3)
        self.gcs_address, self.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
        temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
        head = self._start(["--head", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                            f"--ray-client-server-port={client}", f"--num-cpus={self.head_cpus}",
                            '--resources={"head": 1}', f"--temp-dir={temp}"])
        try:  # the dashboard answers (401 without the token) once the head is up
            wait_for_http(head, f"{self.dashboard}/api/version", "ray start --head", timeout)
        except RuntimeError:
            self.stop()
            raise
        for w in self.workers:
            self._start([f"--address={self.gcs_address}", f"--num-cpus={w.get('num_cpus', 1)}",
                         f"--resources={json.dumps(w.get('resources', {}))}"])
        return self

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM every node, then SIGKILL the process group of each still running ``grace`` s later (one grace for
        all nodes, not one each): a node that ran a job waits out Ray's own grace period (tens of seconds) before
        it exits, and is killed all the same."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in reversed(self.procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
