"""What the test servers share (moto, MLflow, a Ray cluster): free ports on 127.0.0.1, waiting until a process
answers HTTP, and stopping a process with everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def wait_for_http(proc: subprocess.Popen, url: str, what: str, timeout: float) -> None:
    """Return once ``url`` answers (any HTTP status, e.g. 401 without a token, counts); raise, naming ``what``, if
    the process exits first or ``timeout`` s pass (the process is then stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.25)
    stop_group(proc)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``), SIGKILL it after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
