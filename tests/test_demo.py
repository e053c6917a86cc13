"""The demo's pieces that need no Ray: the closing summary names every component, the screen keeps the libraries'
stderr in the log file, the shipped base model is checked before use. Its full run is measured, three fresh-clone
runs in a row, in BENCHMARKS.md (``make demo``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyglot_lion.demo import summary_text
from polyglot_lion.demo_base import PROVENANCE, SHIPPED, WEIGHTS, shipped_base
from polyglot_lion.model.loading import parameter_count


def test_the_summary_names_every_component_the_demo_ran(tmp_path):
    text = summary_text(tmp_path, "sqlite:///x.db", "models:/polyglot-lion-tiny@champion",
                        {"corpus": 30.0, "import": 12.0, "train": 250.0}, 400.0,
                        {"transcribed": 40, "errors": {"unreadable_audio": 2}}, 750, parameters=921_216)
    for component in ("Ray Data ", "Ray Train", "MLflow", "Ray Data bulk", "Ray Serve"):
        assert component in text
    assert "40 transcribed, errors counted: 2 unreadable_audio" in text and "(step 750)" in text
    assert "corpus 30 s, import 12 s, train 250 s; 400 s in all" in text
    assert "a 0.92M-parameter Qwen3-ASR fine-tuned" in text


def test_the_screen_sends_library_stderr_to_the_log_and_keeps_stdout(tmp_path):
    # in a subprocess: the screen redirects file descriptor 2, which pytest's capture also holds
    code = f"""
import os, sys, threading
from pathlib import Path
from polyglot_lion.demo import Screen
with Screen(Path({str(tmp_path / 'details.log')!r}), verbose=False) as s:
    print("the demo's table")
    print("a library warning", file=sys.stderr)
    os.write(2, b"a C++ log line\\n")
    t = threading.Thread(target=print, args=("(raylet) WARNING: from Ray's error listener",))
    t.start()
    t.join()
    s.error("the demo stopped: why")
    print("bars:", s.bars)
print("after", file=sys.stderr)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["the demo's table", "bars: False"]  # stderr is a pipe: no bars
    assert r.stderr.splitlines() == ["the demo stopped: why", "after"]  # fd 2 restored afterwards
    log = (tmp_path / "details.log").read_text()
    assert "a library warning" in log and "a C++ log line" in log and "the demo stopped: why" in log
    assert "(raylet) WARNING: from Ray's error listener" in log  # printed by another thread: not on the screen


def test_the_shipped_base_model_matches_its_provenance(tmp_path):
    prov = json.loads(Path(SHIPPED, PROVENANCE).read_text())
    assert shipped_base() == SHIPPED and prov["weights_dtype"] == "bfloat16"
    assert set(prov["test_capped_error_rate_by_language"]) == {"en", "zh", "ta", "ms"}
    assert parameter_count(SHIPPED) == prov["parameters"]
    assert os.path.getsize(Path(SHIPPED, WEIGHTS)) < 2 * 2**20  # small enough to keep in git
    for name in os.listdir(SHIPPED):
        (tmp_path / name).write_bytes(Path(SHIPPED, name).read_bytes())
    with open(tmp_path / WEIGHTS, "r+b") as f:  # one byte changed
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(ValueError, match=r"model.safetensors has sha256 .* PROVENANCE.json says"):
        shipped_base(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no PROVENANCE.json in .*build_demo_base.py"):
        shipped_base(str(tmp_path / "nowhere"))


def test_an_exported_base_passes_the_demo_check_and_records_its_size(tmp_path):
    from polyglot_lion.demo_base import export_base
    from polyglot_lion.model.tiny import PRESETS, save_tiny_checkpoint
    from polyglot_lion.testing import TINY_TEXTS

    encoder, decoder = PRESETS["demo"]
    ckpt = save_tiny_checkpoint(str(tmp_path / "ckpt"), TINY_TEXTS, encoder=encoder, decoder=decoder)
    dest = export_base(ckpt, str(tmp_path / "base"), "build_demo_base.py --out x", ("en", "ms"), "demo", 10, 48,
                       {"en": 90.0, "ms": 99.0}, {"base_s": 1.0})
    prov = json.loads(Path(dest, PROVENANCE).read_text())
    assert shipped_base(dest) == dest and prov["weights_dtype"] == "bfloat16"
    assert prov["parameters"] == parameter_count(ckpt) and prov["train"]["model.tiny_preset"] == "demo"

