"""benchmarks/ingest_recipes.py (issue 23's recipe import benchmark) at its smallest: every import it times really
ran, each pair's two layouts gave the same utterances, each recipe found what its miniature holds, so the
benchmark cannot rot between full runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_ingest_recipes_smallest_run(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/ingest_recipes.py", "--pair-scale", "2", "--scale", "2",
                           "--repeats", "1", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "ingest_recipes.json").read_text())

    assert [(p["recipe"], p["language"]) for p in r["pairs"]] == [
        ("aishell1", None), ("fleurs", "zh"), ("fleurs", "zh"), ("slr65", None)]
    for p in r["pairs"]:
        assert p["same_utterances"] and p["utterances_compared"] == p["archives"]["clips"] == p["unpacked"]["clips"] > 0
        assert p["ratio_archives_over_unpacked"] == p["archives"]["clips_per_s"] / p["unpacked"]["clips_per_s"]
    assert len(r["recipes"]) == 12 and len({x["recipe"] for x in r["recipes"]}) == 9
    for x in r["recipes"]:
        assert x["as_expected"], x
        assert x["clips"] == x["expected_accepted"] and x["clips_per_s"] == x["clips"] / x["wall_s"] > 0
    assert r["all_in_one"]["clips"] == sum(x["clips"] for x in r["recipes"])
    assert r["setup"]["num_cpus"] == 2

    # what a reader sees: both tables
    assert "| AISHELL-1, one tar.gz per speaker | wav/<spk>.tar.gz |" in proc.stdout
    assert "| fleurs | fleurs-ms |" in proc.stdout and "| - | all twelve, one prepare call |" in proc.stdout
    assert not (tmp_path / "work").exists()
