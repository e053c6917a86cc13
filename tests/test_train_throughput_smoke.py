"""benchmarks/train_throughput.py (issue 3's CPU throughput benchmark) at its smallest: both sides train, the
figures it reports are made from what each side really did, so the benchmark cannot rot between full runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_train_throughput_smallest_run(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--clips", "24", "--epochs", "1", "--log-every", "2",
         "--step-ablation", "1", "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    sides = list(r["summary"])
    assert sides[0] == "reference" and len(sides) == 2 and sides[1].startswith("ours_"), sides
    ref, ours = r["summary"]["reference"], r["summary"][sides[1]]
    replayed = r["setup"]["ours_replayed"]

    # ours trained exactly the micro-batches the replay predicted, and its logged padding per window matches them
    assert ours["steps"] == replayed["steps"] > 2
    assert ours["runs_audio_s_per_s"] and r["runs"][sides[1]][0]["replay_max_window_error"] < 1e-6
    # the reference trained every plan row once (one epoch) in fixed batches, grouped by length, its collator in
    # loader workers (qwen3_asr_sft.py's 4, at most one per core)
    bs = r["setup"]["reference_batch_size"]
    assert ref["steps"] == -(-r["setup"]["plan_rows"] // bs) and ref["batch_size"] == bs
    loader = r["setup"]["reference_loader"]
    assert loader["train_sampling_strategy"] == "group_by_length" and loader["pin_memory"]
    assert ref["loader_workers"] == loader["num_workers"] == min(4, os.cpu_count() or 1) >= 1
    for side in (ref, ours):
        assert side["steady_steps"] > 0 and side["samples_per_s"] > 0 and side["audio_s_per_s"] > 0
        assert 0 < side["audio_fraction"] <= side["padding_efficiency"] <= 1
        assert side["final_loss"] == side["final_loss"]  # not NaN
    assert r["audio_s_per_s_ratio"] == ours["audio_s_per_s"] / ref["audio_s_per_s"]
    assert set(r["targets"]) == {"audio_s_per_s_ratio_ge_1.3", "ours_padding_efficiency_ge_0.90"}

    # the step ablation timed all five ways on the same micro-batch
    ab = r["step_ablation"]
    assert ab["micro_batches"] == 1 and len(ab["s_per_micro_batch"]) == 5
    assert all(s > 0 for s in ab["s_per_micro_batch"].values())

    # what a reader sees: the side-by-side table and the verdict line
    assert "| reference: HF Trainer, librosa collator |" in proc.stdout
    assert "| ours: Ray Train + Ray Data |" in proc.stdout and "audio-s/s ours / reference:" in proc.stdout
