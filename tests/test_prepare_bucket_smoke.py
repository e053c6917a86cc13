"""benchmarks/prepare_bucket.py at its smallest: both targets import the same clips and read back the same rows, so
the benchmark cannot rot between full runs. Figures are not judged here (a shared machine): see BENCHMARKS.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
@pytest.mark.slow
def test_prepare_bucket_smallest_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "benchmarks/prepare_bucket.py", "--clips", "24", "--repeats", "1",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "prepare_bucket.json").read_text())
    assert r["clips"] == 24 and r["same_rows"] is True
    assert r["local"]["clips_per_s"] > 0 and r["bucket"]["clips_per_s"] > 0 and r["ratio_bucket_over_local"] > 0
