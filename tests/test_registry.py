"""Registry commands (models list/show/promote, runs compare) against a real SQLite MLflow store."""

import json

import pytest

from polyglot_lion.cli import main


@pytest.fixture
def store(tmp_path, tiny_checkpoint):
    from mlflow.tracking import MlflowClient

    db = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=db)
    exp = client.create_experiment("polyglot-lion")
    runs = []
    for i, mode in enumerate(("agnostic", "tagged")):
        run = client.create_run(exp, run_name=f"run-{mode}")
        client.log_param(run.info.run_id, "data.target_mode", mode)
        client.log_param(run.info.run_id, "train.max_steps", 100 + i)
        client.log_metric(run.info.run_id, "loss", 1.5 - i * 0.5, step=100)
        client.set_terminated(run.info.run_id)
        runs.append(run.info.run_id)
    client.create_registered_model("tiny")
    for rid in runs:
        client.create_model_version("tiny", tiny_checkpoint, rid)
    client.set_model_version_tag("tiny", "2", "eval.test.aishell1", "42.00")
    client.set_model_version_tag("tiny", "2", "eval.test.average", "55.50")
    return db


def test_models_list_show_promote(store, capsys):
    assert main(["models", "--tracking-uri", store, "list"]) == 0
    out = capsys.readouterr().out
    assert "| tiny | 2 | 2 |" in out
    assert main(["models", "--tracking-uri", store, "promote", "tiny", "2", "--alias", "champion"]) == 0
    assert "tiny@champion -> version 2" in capsys.readouterr().out
    assert main(["models", "--tracking-uri", store, "promote", "tiny", "1", "--alias", "champion"]) == 0
    assert "(was 2)" in capsys.readouterr().out
    assert main(["models", "--tracking-uri", store, "show", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "eval test.aishell1" in out and "42.00" in out and "55.50" in out and "run-tagged" in out
    assert main(["models", "--tracking-uri", store, "--json", "show", "tiny"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [v["aliases"] for v in info["versions"]] == ["champion", ""]
    assert info["versions"][1]["eval"] == {"test.aishell1": "42.00", "test.average": "55.50"}
    assert info["versions"][1]["target_mode"] == "tagged"


def test_registry_errors_name_what_exists(store, capsys):
    assert main(["models", "--tracking-uri", store, "show", "nope"]) == 2
    assert "registered model 'nope' not found; registered: ['tiny']" in capsys.readouterr().err
    assert main(["models", "--tracking-uri", store, "promote", "tiny", "9", "--alias", "champion"]) == 2
    assert "tiny has no version 9; versions: [1, 2]" in capsys.readouterr().err
    assert main(["runs", "compare", "--tracking-uri", store, "--experiment", "nope"]) == 2
    assert "experiment 'nope' not found" in capsys.readouterr().err


def test_runs_compare(store, capsys):
    assert main(["runs", "compare", "--tracking-uri", store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| run | status | started | target_mode | max_steps | loss |")
    assert "run-tagged" in out[2] and "| tagged | 101 | 1 |" in out[2]  # newest first
    assert main(["runs", "compare", "--tracking-uri", store, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run"] for r in rows} == {"run-agnostic", "run-tagged"}
