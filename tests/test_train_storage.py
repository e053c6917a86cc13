"""Run outputs in a bucket (issue 26): checkpoints written by Ray Train (or by the worker in local mode) to an
S3-compatible server on 127.0.0.1, resumed from there, the model logged to an MLflow server whose artifacts are in
a bucket and loaded back by its registered alias; nothing written to the local disk but temporary files. A bucket
that does not exist or denies access fails before Ray starts. Whole runs in a bucket: test_bucket_pipeline.py (Train's
local mode, resumed) and test_two_nodes.py (a Ray Train worker on a second node, stopped and resumed)."""

import json
import os

import pytest

from polyglot_lion.config import load_config
from polyglot_lion.storage import LocationError, resolve

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs/configs/qwen3_asr/tiny_cpu.yaml")


def _overrides(store, plan, output_dir, name, tracking, **kw):
    base = {"data.store": store, "data.plan": plan, "run.output_dir": output_dir, "run.name": name,
            "tracking.uri": tracking, "data.max_batch_size": 8, "data.bucket_window": 32, "train.lr": 0.001,
            "train.dev_every": 0, "data.featurize_actors": 0, "train.log_every": 1, "train.checkpoint_every": 1,
            "train.keep_checkpoints": 1}
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]


def _steps(tracking, run_id):
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(tracking_uri=tracking).get_metric_history(run_id, "loss"))


def test_local_mode_checkpoints_in_a_bucket_skip_one_cut_short(bucket, tmp_path):
    """Local mode keeps its checkpoints itself; in a bucket (no rename) a copy being written or deleted holds a
    marker, and readers skip it."""
    from polyglot_lion.train.checkpoints import (
        WRITING_MARKER,
        checkpoint_metrics,
        keep_local,
        latest_local_checkpoint,
        local_checkpoints,
    )

    written = tmp_path / "written"
    written.mkdir()
    (written / "config.json").write_text("{}")
    for step in (1, 2, 3):
        (written / "metrics.json").write_text(json.dumps({"step": step, "loss": 1.0 / step}))
        kept = keep_local(str(written), f"{bucket}/run/checkpoints", step, keep=2, select_by="last")
        assert kept == f"{bucket}/run/checkpoints/checkpoint_step_{step:08d}"
    names = ["checkpoint_step_00000002", "checkpoint_step_00000003"]
    assert local_checkpoints(f"{bucket}/run/checkpoints") == [f"{bucket}/run/checkpoints/{n}" for n in names]
    assert not resolve(f"{bucket}/run/checkpoints/checkpoint_step_00000003/{WRITING_MARKER}").exists()
    # a copy cut short: its files are there, and so is the marker
    cut = resolve(f"{bucket}/run/checkpoints/checkpoint_step_00000004")
    cut.join(WRITING_MARKER).write_bytes(b"")
    cut.join("config.json").write_text("{}")
    assert local_checkpoints(f"{bucket}/run/checkpoints")[-1].endswith(names[-1])
    latest = latest_local_checkpoint(f"{bucket}/run/checkpoints")
    assert latest.path.endswith(names[-1]) and latest.filesystem.type_name == "s3"
    assert checkpoint_metrics(f"{bucket}/run/checkpoints/{names[-1]}")["step"] == 3
    with latest.as_directory() as d:  # what a resuming worker does: Ray downloads it
        assert json.loads(open(os.path.join(d, "metrics.json")).read())["step"] == 3


def test_folders_go_to_a_bucket_and_come_back_as_temporary_copies(bucket, tmp_path):
    from polyglot_lion.folders import cached_local_copy, local_copy, upload_folder

    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(b"\0" * 10)
    loc = upload_folder(src, f"{bucket}/m/model")
    assert [f.path.rsplit("/m/", 1)[1] for f in loc.files(recursive=True)] == ["model/config.json",
                                                                                 "model/sub/w.bin"]
    copy = cached_local_copy(f"{bucket}/m/model")
    assert copy.startswith(os.path.realpath(os.environ.get("TMPDIR", "/tmp"))) or copy.startswith("/tmp")
    assert open(os.path.join(copy, "sub", "w.bin"), "rb").read() == b"\0" * 10
    assert cached_local_copy(f"{bucket}/m/model") == copy  # one download per node and content
    loc.join("config.json").write_text('{"changed": 1}')
    assert cached_local_copy(f"{bucket}/m/model") != copy  # written again: downloaded again
    with local_copy(f"{bucket}/m/model") as d:
        assert json.loads(open(os.path.join(d, "config.json")).read()) == {"changed": 1}
    assert not os.path.exists(d)  # a temporary copy, gone after the block
    with local_copy(src) as d:  # a local folder is used where it is
        assert d == str(src)


def test_a_run_into_a_missing_or_denied_bucket_fails_before_ray_starts(s3_server, bucket, tmp_path, monkeypatch):
    from polyglot_lion.train import run as run_module

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(run_module, "init_ray", no_ray)
    monkeypatch.chdir(tmp_path)
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    missing = load_config(CONFIG, _overrides("store", "plan", "s3://no-such-bucket-26/runs", "r", tracking),
                          check_paths=False)
    with pytest.raises(LocationError, match=r"run.output_dir s3://no-such-bucket-26/runs: bucket "
                                            r"'no-such-bucket-26' does not exist"):
        run_module.train(missing)
    s3_server.deny_all(bucket.removeprefix("s3://"))
    denied = load_config(CONFIG, _overrides("store", "plan", f"{bucket}/runs", "r", tracking), check_paths=False)
    with pytest.raises(LocationError, match=rf"run.output_dir {bucket}/runs: cannot (write to|read) it"):
        run_module.train(denied)
    assert os.listdir(tmp_path) == []  # nothing written: no run folder, no MLflow store
