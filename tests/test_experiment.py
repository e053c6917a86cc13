"""The balance ablation in --smoke mode: every stage runs and the outputs have their shapes (not the numbers)."""

import json
import sys

import pytest


@pytest.mark.ray
def test_balance_ablation_smoke(tmp_path, ray_session):
    """In the suite's Ray session (the script is the same call: jobs/experiments/balance_ablation.py --smoke)."""
    from polyglot_lion.experiment import AblationOptions, run_ablation

    out = tmp_path / "abl"
    run_ablation(AblationOptions(out=str(out), smoke=True))
    res = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in res["runs"]]
    assert names == ["base-en-zh", "natural-agnostic-s0", "temperature-agnostic-s0", "two-stage-agnostic-s0",
                     "natural-agnostic-s1", "two-stage-agnostic-s1", "two-stage-tagged-s0"]
    for r in res["runs"]:
        assert len(r["eval"]["benchmarks"]) == 12 and set(r["eval"]["languages"]) == {"en", "zh", "ta", "ms"}
        assert r["model_version"]["name"] == "ablation-tiny"
    s = res["summary"]
    assert set(s["strategies"]) == {"base (en+zh) / agnostic", "natural / agnostic", "temperature / agnostic",
                                    "two-stage / agnostic", "two-stage / tagged"}
    assert s["strategies"]["natural / agnostic"]["seeds"] == [0, 1]
    assert set(s["claims"]) == {"balanced_vs_natural", "agnostic_vs_tagged"}
    md = (out / "results.md").read_text()
    assert "SMOKE" in md and "| two-stage / tagged | 0 |" in md
    assert (out / "results.png").stat().st_size > 5000
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=res["tracking_uri"])
    exp = client.get_experiment_by_name("balance-ablation")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 7 + 7 + 1  # trainings, evaluations, the summary: all in one experiment


def test_budget_parsing():
    sys.path.insert(0, "jobs/experiments")
    from balance_ablation import parse_budget

    assert parse_budget("75m") == {"budget_minutes": 75.0}
    assert parse_budget("1500,300") == {"base_steps": 1500, "ft_steps": 300}
    with pytest.raises(SystemExit, match="use minutes like 75m"):
        parse_budget("lots")
