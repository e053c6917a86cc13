"""Training through Ray Train on the synthetic store: checkpoints, resume to the same total step, MLflow,
2-worker DDP and DeepSpeed ZeRO on CPU (gloo), a crash restarted by FailureConfig, loss going down.
The `ray job submit` path is in test_jobs.py; the parts that need no Ray are in test_train.py."""

import json
import math

import pytest

from polyglot_lion.config import load_config

pytestmark = pytest.mark.ray  # every test here trains or featurises on the shared Ray session

CONFIG = "jobs/configs/qwen3_asr/tiny_cpu.yaml"


@pytest.mark.ray
def test_train_checkpoint_resume_and_mlflow(tmp_path, corpus_store):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.train.run import train

    store, plan = corpus_store
    base = [f"data.store={store}", f"data.plan={plan}", f"run.output_dir={tmp_path}/runs", "run.name=resume",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "train.checkpoint_every=3", "train.log_every=3",
            "train.dev_every=3", "data.max_batch_size=8", "data.bucket_window=32", "train.lr=0.001",
            "data.featurize_actors=0", "scaling.num_workers=0",  # Train's local mode: checkpoints in the run folder
            "train.dev_eval_every=3",  # the dev split transcribed and scored at steps 3 and 6
            "train.select_by=dev_capped_error_rate", "train.keep_checkpoints=1"]  # the best one, and the latest
    first = train(load_config(CONFIG, base + ["train.max_steps=3"]))
    assert first["metrics"]["step"] == 3 and str(first["model_version"]["version"]) == "1"
    with pytest.warns(UserWarning, match=r"resuming at step 3 with train.max_steps=6, but this run was training "
                                         r"towards 3: .* the learning rate jumps to 0.0005 "):
        second = train(load_config(CONFIG, base + ["train.max_steps=6"]))  # same run name: resumes at step 3
    assert second["metrics"]["step"] == 6
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    steps = [m.step for m in client.get_metric_history(first["mlflow_run_id"], "loss")]
    assert steps == [3, 6]  # no repeated or skipped steps across the resume
    assert {"dev_loss", "lr", "grad_norm", "samples_per_s", "audio_s_per_s", "padding_efficiency",
            "peak_memory_mb"} <= set(client.get_run(first["mlflow_run_id"]).data.metrics)
    state = json.loads(open(f"{second['latest_checkpoint']}/training_state.json").read())
    assert state["step"] == 6 and state["read"] == 0
    import glob

    # train.select_by: the run's model (logged, registered) is the checkpoint with the lowest dev error rate (the
    # later one on a tie); local mode keeps it and the latest (keep_checkpoints 1), in its own folder
    rates = dict(_history(tmp_path, first["mlflow_run_id"], "dev_capped_error_rate"))
    best = 3 if rates[3] < rates[6] else 6
    kept = sorted(glob.glob(f"{tmp_path}/runs/resume/checkpoints/checkpoint_step_*"))
    assert [int(p.rsplit("_", 1)[1]) for p in kept] == sorted({best, 6}) and second["latest_checkpoint"] == kept[-1]
    assert second["checkpoint"] == kept[0] and second["model_step"] == best
    assert json.loads(open(f"{second['checkpoint']}/metrics.json").read())["dev_capped_error_rate"] == rates[best]
    assert client.get_run(first["mlflow_run_id"]).data.metrics["model_step"] == best
    epochs = [v for _, v in _history(tmp_path, first["mlflow_run_id"], "epoch")]
    assert len(epochs) == 2 and 0 < epochs[0] < epochs[1]  # fractional epochs of the plan, growing
    assert sorted(str(v.version) for v in client.search_model_versions("name='polyglot-lion-tiny'")) == ["1", "2"]
    plots = [f.path for f in client.list_artifacts(first["mlflow_run_id"], "plots")]
    assert plots == ["plots/training_curves.png"]
    png = client.download_artifacts(first["mlflow_run_id"], "plots/training_curves.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # the dev evaluation: logged at both checkpoints, per language, and equal to what 'polyglot-lion evaluate
    # --split dev' says of the last checkpoint (the same utterances and code, the same weights)
    from polyglot_lion.evaluation.evaluate import dev_metrics, evaluate

    logged = {k: dict(_history(tmp_path, first["mlflow_run_id"], k)) for k in client.get_run(
        first["mlflow_run_id"]).data.metrics if k.startswith("dev_") and k not in ("dev_loss", "dev_eval_s")}
    assert {f"dev_capped_error_rate_{lang}" for lang in ("en", "zh", "ta", "ms")} <= set(logged)
    assert all(sorted(v) == [3, 6] for v in logged.values()), logged
    assert 0 <= logged["dev_capped_error_rate"][6] <= 100 and logged["dev_eval_utterances"][6] == 12 * 2
    res = evaluate(second["latest_checkpoint"], store, split="dev", max_utterances=64 // 12, log_to_mlflow=False,
                   progress=False)
    assert dev_metrics(res) == pytest.approx({k: v[6] for k, v in logged.items()}, abs=1e-9)


def _overrides(tmp_path, store, plan, name, **kw):
    base = {"data.store": store, "data.plan": plan, "run.output_dir": f"{tmp_path}/runs", "run.name": name,
            "tracking.uri": f"sqlite:///{tmp_path}/mlflow.db", "data.max_batch_size": 8, "data.bucket_window": 32,
            "train.lr": 0.001, "train.dev_every": 0, "data.featurize_actors": 0,
            "scaling.num_workers": 0}  # local mode unless a test needs Ray Train workers
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]


def _history(tmp_path, run_id, key="loss"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.ray
def test_loss_goes_down_and_checkpoint_generates(tmp_path, corpus_store):
    import numpy as np
    import torch

    from polyglot_lion.model.loading import load_model
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    out = train(load_config(CONFIG, _overrides(tmp_path, store, plan, "learn", **{
        "train.max_steps": 40, "train.log_every": 5, "train.checkpoint_every": 40, "train.warmup_ratio": 0.1,
        "data.read_ahead_rows": 16})))  # several reads, each started in the background while the last trains
    losses = [v for _, v in _history(tmp_path, out["mlflow_run_id"])]
    assert len(losses) == 8
    assert losses[-1] < 0.6 * losses[0], losses  # from ~ln(vocab) towards the language-model plateau
    waits = [v for _, v in _history(tmp_path, out["mlflow_run_id"], "input_wait_frac")]
    assert len(waits) == 8 and all(0 <= w < 1 for w in waits), waits  # the share of each window spent on input

    # the checkpoint is a plain transformers folder: load it the way inference does, and generate
    model, processor = load_model(out["checkpoint"])
    prompt = processor.apply_transcription_request([np.zeros(16000, np.float32)])
    with torch.no_grad():
        gen = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new = gen[0, prompt["input_ids"].shape[1]:]
    assert 0 < len(new) <= 8
    assert isinstance(processor.tokenizer.decode(new, skip_special_tokens=True), str)


@pytest.mark.ray
def test_early_stopping_ends_the_run_and_a_rerun_respects_it(tmp_path, corpus_store):
    from mlflow.tracking import MlflowClient

    from polyglot_lion.train.run import train

    store, plan = corpus_store

    def run(patience: int) -> dict:
        # no checkpoint after the first can beat the best by 1000 nats: each one uses up one unit of patience
        return train(load_config(CONFIG, _overrides(tmp_path, store, plan, "early", **{
            "train.max_steps": 30, "train.checkpoint_every": 2, "train.log_every": 2, "train.dev_every": 2,
            "train.select_by": "dev_loss", "train.early_stop_patience": patience,
            "train.early_stop_min_delta": 1000, "train.keep_checkpoints": 1})))

    out = run(patience=2)
    assert out["metrics"]["step"] == 6 and out["stopped_early_at_step"] == 6  # checkpoints 2 (best), 4, 6
    run_id = out["mlflow_run_id"]
    assert [s for s, _ in _history(tmp_path, run_id)] == [2, 4, 6]
    assert _history(tmp_path, run_id, "checkpoints_since_best") == [(2, 0), (4, 1), (6, 2)]
    dev = dict(_history(tmp_path, run_id, "dev_loss"))
    assert out["model_step"] == min(dev, key=lambda s: (dev[s], -s))  # still the lowest dev loss of those kept
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(run_id).data.tags["stopped_early_at_step"] == "6"
    with open(f"{out['latest_checkpoint']}/training_state.json") as f:
        state = json.load(f)
    assert state["stopped_early"] and state["select_scores"] == pytest.approx([dev[2], dev[4], dev[6]])

    hours = client.get_run(run_id).data.metrics["wall_hours"]
    again = run(patience=2)  # the same run again: it resumes at step 6, already stopped, and trains nothing
    assert [s for s, _ in _history(tmp_path, run_id)] == [2, 4, 6] and again["stopped_early_at_step"] == 6
    assert again["already_finished"] and again["model_version"] == out["model_version"]  # nothing registered again
    assert (again["checkpoint"], again["model_step"], again["metrics"]["step"]) == (out["checkpoint"], out["model_step"], 6)
    assert client.get_run(run_id).data.metrics["wall_hours"] == hours
    more = run(patience=3)  # more patience continues it, for one more checkpoint
    assert [s for s, _ in _history(tmp_path, run_id)] == [2, 4, 6, 8] and more["stopped_early_at_step"] == 8
    assert int(more["model_version"]["version"]) == int(out["model_version"]["version"]) + 1
    # the run's time and cost add up over the calls that trained it (before: the last call's alone)
    assert client.get_run(run_id).data.metrics["wall_hours"] == pytest.approx(hours + more["wall_hours_this_call"])
    assert more["wall_hours"] == pytest.approx(hours + more["wall_hours_this_call"]) and hours > 0


@pytest.mark.ray
def test_two_workers_ddp_on_gloo(tmp_path, corpus_store):
    import shutil

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.model.loading import load_model
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    # one dev utterance does not decode: every rank reads the whole (unsplit) dev set, and it is one utterance
    store = shutil.copytree(store, tmp_path / "store")
    _corrupt_one(next(f for p in list_partitions(str(store), "dev") for f in p.files), lambda uid: True)
    out = train(load_config(CONFIG, _overrides(tmp_path, str(store), plan, "ddp", **{
        "scaling.num_workers": 2, "scaling.cpus_per_worker": 0.5, "train.max_steps": 16, "train.log_every": 2,
        "data.featurize_actors": 1,  # the actor-pool featuriser (others: tasks)
        "data.read_ahead_rows": 16, "data.plan_passes": 1,  # each rank reads ahead: the next read starts
        "train.dev_every": 12,  # before the loop asks for it; one epoch per read, so 12 steps cross a read
        # boundary. 16 rows is under a rank's share of a read (~32), so each rank is one read ahead (64 queued whole
        # reads and started up to four more, a featuriser actor each, that the run never reached).
        # The dev loss at step 12 is reduced over the ranks' gloo group
        "train.dev_eval_every": 4, "train.checkpoint_every": 4,  # rank 0 transcribes while rank 1 waits
        "train.select_by": "dev_capped_error_rate", "train.keep_checkpoints": 1,  # Ray keeps the best + latest
        # no checkpoint after step 4 can improve on it by 1000 points: the run stops at 12 of 16. Rank 0 alone
        # has the dev error rate and decides; rank 1 must stop with it (else it waits in a collective forever)
        "train.early_stop_patience": 2, "train.early_stop_min_delta": 1000})))
    assert out["metrics"]["step"] == 12 and out["stopped_early_at_step"] == 12
    assert [s for s, _ in _history(tmp_path, out["mlflow_run_id"])] == list(range(2, 13, 2))  # rank 0 logs
    dev = _history(tmp_path, out["mlflow_run_id"], "dev_loss")
    assert [s for s, _ in dev] == [12] and 0 < dev[0][1] < 20
    assert _history(tmp_path, out["mlflow_run_id"], "dev_skipped_utterances") == [(12, 1)]  # not once per rank
    rates = dict(_history(tmp_path, out["mlflow_run_id"], "dev_capped_error_rate"))
    assert sorted(rates) == [4, 8, 12] and all(0 <= r <= 100 for r in rates.values())
    assert _history(tmp_path, out["mlflow_run_id"], "checkpoints_since_best") == [(4, 0), (8, 1), (12, 2)]
    best = min(rates, key=lambda s: (rates[s], -s))
    assert out["model_step"] == best  # from Ray Train's kept checkpoints, scored by the metric
    with open(f"{out['latest_checkpoint']}/training_state.json") as f:
        assert json.load(f)["step"] == 12
    # ~48 utterances split over 2 ranks: the run crosses into a second read of the dataset, where the ranks'
    # read-ahead threads meet at the streaming split's next epoch
    with open(f"{out['latest_checkpoint']}/training_state.json") as f:
        assert json.load(f)["read"] >= 1
    load_model(out["checkpoint"])


@pytest.mark.ray
@pytest.mark.parametrize("stage", [3])  # ZeRO-2 ran the same way (a parameter here); kept out for suite time
def test_deepspeed_zero_on_cpu_resumes(tmp_path, corpus_store, stage):
    from polyglot_lion.model.loading import load_model
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    kw = {"scaling.num_workers": 2, "scaling.cpus_per_worker": 0.5, "scaling.deepspeed_stage": stage,
          "train.log_every": 2, "train.checkpoint_every": 2, "train.grad_accum": 2}
    first = train(load_config(CONFIG, _overrides(tmp_path, store, plan, f"zero{stage}", **kw, **{"train.max_steps": 2})))
    assert first["metrics"]["step"] == 2
    second = train(load_config(CONFIG, _overrides(tmp_path, store, plan, f"zero{stage}", **kw,
                                                  **{"train.max_steps": 4})))
    assert second["metrics"]["step"] == 4
    assert [s for s, _ in _history(tmp_path, first["mlflow_run_id"])] == [2, 4]
    import os

    assert os.path.isdir(os.path.join(second["checkpoint"], "deepspeed"))  # ZeRO partitions of both ranks
    model, _ = load_model(second["checkpoint"])  # gathered 16-bit weights in transformers format
    assert sum(p.numel() for p in model.parameters()) > 1e6


@pytest.mark.ray
def test_restart_replays_the_same_batches_across_passes(tmp_path, corpus_store):
    """FailureConfig restarts a crashed worker from its latest checkpoint, and a worker that dies mid-read (two
    epochs of the plan per read) resumes on exactly the micro-batches an uninterrupted run trains on: every
    step's loss equals the uninterrupted run's, the replayed step included."""
    import math
    import os

    from polyglot_lion.data.balance import read_plan
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    per_pass = math.ceil(read_plan(plan).num_rows / 8)  # about the micro-batches of one epoch (fixed batches of 8)
    total, cut = per_pass + 4, per_pass - 2  # the checkpoint late in pass 0; the run ends in pass 1
    kw = {"data.fixed_batch_size": 8, "data.plan_passes": 2, "train.log_every": 1, "train.max_steps": total,
          "train.checkpoint_every": cut, "scaling.max_failures": 1, "scaling.num_workers": 1,
          "data.read_ahead_rows": 64}  # the replay holds with the next read started in the background
    # the reference run in Train's local mode (the same loop and batches in the driver; no worker start-up)
    full = train(load_config(CONFIG, _overrides(tmp_path, store, plan, "uninterrupted",
                                                **{**kw, "scaling.num_workers": 0})))
    crashed = train(load_config(CONFIG, _overrides(tmp_path, store, plan, "crashed", **kw)),
                    inject_crash_at_step=cut + 1)
    assert os.path.exists(f"{tmp_path}/runs/crashed/.crash_injected")  # the worker process did die
    assert crashed["metrics"]["step"] == total
    want = dict(_history(tmp_path, full["mlflow_run_id"]))
    got = _history(tmp_path, crashed["mlflow_run_id"])
    assert sorted(want) == list(range(1, total + 1)) and [s for s, _ in got].count(cut + 1) == 2  # replayed once
    for step, loss in got:
        assert loss == pytest.approx(want[step], rel=1e-4, abs=1e-5), (step, loss, want[step])
    epochs = [v for _, v in _history(tmp_path, full["mlflow_run_id"], "epoch")]
    assert epochs[-1] > 1.0  # the run went into the second epoch of the read
    # the finished run again: Ray Train resumes it at its last step and trains nothing; nothing is registered again
    again = train(load_config(CONFIG, _overrides(tmp_path, store, plan, "crashed", **kw)))
    assert again["already_finished"] and again["model_version"] == crashed["model_version"]
    assert (again["checkpoint"], again["metrics"]["step"]) == (crashed["checkpoint"], total)
    assert sorted(dict(_history(tmp_path, crashed["mlflow_run_id"]))) == list(range(1, total + 1))


def test_featurize_task_equals_actor(corpus_store, tiny_checkpoint):
    """The task featuriser (``data.featurize_actors: 0``, processor cached per process) gives the actor's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.train import data

    store, _ = corpus_store
    rows = pa.concat_tables([pq.read_table(f, columns=["id", "audio", "text", "language", "duration_s"])
                             for p in list_partitions(store, "train")[:2] for f in p.files]).slice(0, 3)
    want = data.Featurize(tiny_checkpoint, "agnostic")(rows)
    assert data.featurize_batch(rows, tiny_checkpoint, "agnostic").equals(want)
    assert data.featurize_batch(rows, tiny_checkpoint, "agnostic").equals(want)  # from the cache
    assert (tiny_checkpoint, "agnostic") in data._ENCODERS
    assert not data.featurize_batch(rows, tiny_checkpoint, "tagged").equals(want)  # the mode is part of the key
    # the driver's prompt pieces: the workers load only the tokenizer and the feature extractor, the same rows
    data._ENCODERS.clear()
    pieces = data.prompt_pieces(tiny_checkpoint)
    assert data.Featurize(tiny_checkpoint, "agnostic", pieces)(rows).equals(want)
    assert pieces and data.load_tokenizer_and_features(tiny_checkpoint)  # that light load, not the fallback


def test_a_row_that_cannot_be_featurised_is_marked_then_dropped_and_counted(corpus_store, tiny_checkpoint):
    """One bad utterance must not end a training job: the featuriser marks it (``error``: reason and detail),
    the trainer drops it and counts it by reason; the other rows are featurised as before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.train import data

    store, _ = corpus_store
    rows = pa.concat_tables([pq.read_table(f, columns=["id", "audio", "text", "language", "duration_s"])
                             for p in list_partitions(store, "train")[:1] for f in p.files]).slice(0, 3)
    good = data.featurize_batch(rows, tiny_checkpoint, "agnostic")
    assert good.schema == data.FEATURE_SCHEMA and good["error"].null_count == 3
    audio = rows["audio"].to_pylist()
    bad_rows = rows.set_column(rows.schema.get_field_index("audio"), "audio",
                               pa.array([audio[0], b"not a flac file", audio[2]], pa.binary()))
    out = data.featurize_batch(bad_rows, tiny_checkpoint, "agnostic")
    errors = out["error"].to_pylist()
    assert errors[0] is None and errors[2] is None and errors[1].startswith("unreadable_audio: LibsndfileError")
    assert out.slice(1, 1)["features"].to_pylist() == [b""] and out.slice(1, 1)["n_frames"].to_pylist() == [0]
    keep = [0, 2]
    assert out.take(keep).drop_columns(["error"]).equals(good.take(keep).drop_columns(["error"]))

    skipped = data.SkippedRows()
    kept = list(skipped.filter(iter(out.to_pylist() * 2)))
    assert [r["id"] for r in kept] == [rows["id"][i].as_py() for i in keep] * 2
    assert skipped.total == 2 and dict(skipped.by_reason) == {"unreadable_audio": 2}
    assert set(data.SKIP_REASONS) >= set(skipped.by_reason)


def _corrupt_one(path: str, pick) -> str:
    """Overwrite the audio of the first row of a store shard whose id ``pick`` accepts with a FLAC header and
    nothing readable after it; returns that row's id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids, audio = table["id"].to_pylist(), table["audio"].to_pylist()
    victim = next(i for i, uid in enumerate(ids) if pick(uid))
    audio[victim] = b"fLaC" + b"\0" * 64
    pq.write_table(table.set_column(table.schema.get_field_index("audio"), "audio",
                                    pa.array(audio, table.schema.field("audio").type)), path)
    return ids[victim]


def test_training_skips_an_unreadable_utterance_and_counts_it_across_a_resume(tmp_path, corpus_store, capfd):
    """A store with one corrupt utterance (its FLAC bytes overwritten): the job trains on, MLflow counts the
    drops by reason (once per epoch of the plan that meets it), the job log names it, and a resumed run that
    replays the read counts it once, not again."""
    import shutil

    import pyarrow.parquet as pq

    from polyglot_lion.data.balance import read_plan
    from polyglot_lion.data.store import list_partitions
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    bad_store = str(tmp_path / "store")
    shutil.copytree(store, bad_store)
    planned = set(read_plan(plan)["id"].to_pylist())
    shard = next(f for p in list_partitions(bad_store, "train") for f in p.files
                 if planned & set(pq.read_table(f, columns=["id"])["id"].to_pylist()))
    dev_shard = next(f for p in list_partitions(bad_store, "dev") for f in p.files)

    victim = _corrupt_one(shard, lambda uid: uid in planned)
    _corrupt_one(dev_shard, lambda uid: True)

    over = _overrides(tmp_path, bad_store, plan, "skip", **{"train.log_every": 2, "train.checkpoint_every": 2,
                                                            "data.plan_passes": 1, "data.fixed_batch_size": 16})
    first = train(load_config(CONFIG, over + ["train.max_steps=2", "train.dev_every=2"]))
    assert first["metrics"]["skipped_utterances"] == 1 and first["metrics"]["skipped_unreadable_audio"] == 1
    assert first["metrics"]["dev_skipped_utterances"] == 1 and first["metrics"]["dev_loss"] > 0
    log = capfd.readouterr().err  # local mode: the worker's log is this process's
    assert f"skipped a training utterance that cannot be featurised: {victim}: unreadable_audio: " in log
    assert "skipped a dev utterance that cannot be featurised: " in log
    # resumes at step 2 (replaying read 0 up to there) and trains on into the next read of the dataset
    from polyglot_lion.train.data import steps_for_epochs

    per_read = steps_for_epochs(read_plan(plan)["duration_s"].to_pylist(), 1, 1, 1, window=32, max_frames=1,
                                max_batch_size=1, fixed_batch_size=16)  # fixed batches: exact (less one bad row)
    total = per_read + 4 + per_read % 2  # even, so the last step is logged
    second = train(load_config(CONFIG, over + [f"train.max_steps={total}"]))
    assert second["metrics"]["step"] == total
    skipped = _history(tmp_path, first["mlflow_run_id"], "skipped_utterances")
    epochs = dict(_history(tmp_path, first["mlflow_run_id"], "epoch"))
    assert [s for s, _ in skipped] == list(range(2, total + 1, 2))
    # one drop per read (an epoch of the plan): 1 while epoch 0 lasts (epoch metric up to 1.0), 2 in epoch 1, ...
    assert [v for _, v in skipped] == [math.ceil(epochs[s]) for s, _ in skipped], (skipped, epochs)
    assert skipped[-1][1] >= 2  # the run went past one read
    from polyglot_lion.cli import skipped_summary  # what `polyglot-lion train` prints at the end

    assert skipped_summary(second["metrics"]) == (
        "2 training utterance(s) skipped: they could not be featurised (unreadable_audio=2; the first are named "
        "in the job's log)")
    assert skipped_summary({"skipped_utterances": 0}) is None and skipped_summary({}) is None


def test_train_epochs_sets_max_steps_from_the_plan(tmp_path, corpus_store, capsys):
    """train.epochs=1: max_steps comes from the plan (said, and logged as the run's train.max_steps), and the
    run ends at about one epoch of the plan by its own epoch metric."""
    from mlflow.tracking import MlflowClient

    from polyglot_lion.train.run import train

    store, plan = corpus_store
    out = train(load_config(CONFIG, _overrides(tmp_path, store, plan, "epochs", **{
        "train.epochs": 1, "train.max_steps": 1, "train.log_every": 1000, "train.checkpoint_every": 1000,
        "data.plan_passes": 1})))
    said = capsys.readouterr().out
    steps = out["metrics"]["step"]
    assert "train.epochs=1: " in said and f"-> train.max_steps={steps} (was 1)" in said and steps > 5
    params = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(out["mlflow_run_id"]).data.params
    assert params["train.max_steps"] == str(steps) and params["train.epochs"] == "1.0"
    assert 0.85 <= out["metrics"]["epoch"] <= 1.15, out["metrics"]["epoch"]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.end_time  # not left RUNNING


@pytest.mark.ray
def test_compiled_layers_and_bf16_weights_train_and_resume(tmp_path, corpus_store):
    """model.compile: the same losses as eager, and a checkpoint with the usual weight names; compiled as for CUDA
    graphs (compile_mode reduce-overhead, which on CPU compiles as default but keeps the gradient buffers across
    steps) on a grid of padded shapes (data.token_multiple / frame_multiple). train.bf16_weights
    (bf16 weights, fp32 master copies in the optimizer): losses within bf16's rounding of fp32's, bf16 weights in
    the checkpoint, and a resume that restores the masters and continues to the same total step."""
    import shutil
    import warnings

    import torch
    from safetensors import safe_open

    from polyglot_lion.model.loading import load_model
    from polyglot_lion.train.run import train

    store, plan = corpus_store

    def run(name, steps, **kw):
        out = train(load_config(CONFIG, _overrides(tmp_path, store, plan, name, **{
            "train.max_steps": steps, "train.log_every": 1, "train.checkpoint_every": 2, **kw})))
        return out, [v for _, v in _history(tmp_path, out["mlflow_run_id"])]

    _, eager = run("eager", 4)
    compiled_out, compiled = run("compiled", 4, **{"model.compile": "true", "model.compile_mode": "reduce-overhead",
                                                   "data.token_multiple": 32, "data.frame_multiple": 64})
    assert compiled == pytest.approx(eager, rel=1e-4)
    with safe_open(f"{compiled_out['checkpoint']}/model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "_orig_mod" in k]
    load_model(compiled_out["checkpoint"])  # loads as inference does

    out, bf16w = run("bf16w", 4, **{"train.bf16_weights": "true"})
    assert bf16w == pytest.approx(eager, rel=5e-2) and bf16w != pytest.approx(eager, rel=1e-6)
    # interrupted after step 2's checkpoint: the same run again resumes there and replays steps 3 and 4 exactly
    shutil.rmtree(out["checkpoint"])
    assert out["checkpoint"].endswith("checkpoint_step_00000004")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run("bf16w", 4, **{"train.bf16_weights": "true"})
    assert not [w for w in caught if "resuming at step" in str(w.message)]  # same max_steps: same schedule
    history = _history(tmp_path, out["mlflow_run_id"])
    assert [s for s, _ in history] == [1, 2, 3, 3, 4, 4]
    assert history[2][1] == history[3][1] and history[4][1] == history[5][1]  # masters and AdamW came back exact
    with safe_open(f"{out['checkpoint']}/model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    masters = torch.load(f"{out['checkpoint']}/optimizer.pt", weights_only=False)["optimizer"]["masters"]
    assert masters and {m.dtype for m in masters} == {torch.float32}


@pytest.mark.ray
def test_a_resumed_run_keeps_the_encoder_frozen(tmp_path, corpus_store):
    """model.freeze_audio_encoder (and activation checkpointing, set up next to it) apply to the model a resumed
    run loads from its checkpoint, not only to the base model: an interrupted frozen run resumes, replays its
    steps exactly, and the encoder's weights are still the ones it started with."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from polyglot_lion.train.run import train

    store, plan = corpus_store
    args = _overrides(tmp_path, store, plan, "frozen", **{
        "train.max_steps": 4, "train.log_every": 1, "train.checkpoint_every": 2,
        "model.freeze_audio_encoder": "true", "model.activation_checkpointing": "true"})
    out = train(load_config(CONFIG, args))
    step2 = out["checkpoint"].replace("checkpoint_step_00000004", "checkpoint_step_00000002")
    shutil.rmtree(out["checkpoint"])  # interrupted after step 2's checkpoint
    again = train(load_config(CONFIG, args))
    history = _history(tmp_path, out["mlflow_run_id"])
    assert [s for s, _ in history] == [1, 2, 3, 3, 4, 4]
    assert history[2][1] == history[3][1] and history[4][1] == history[5][1]
    before, after = load_file(f"{step2}/model.safetensors"), load_file(f"{again['checkpoint']}/model.safetensors")
    encoder = [k for k in before if ".audio_tower." in k]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in before if ".language_model." in k)


def test_a_plan_from_another_store_is_refused_before_ray_starts(tmp_path, corpus_store):
    """The probe: a plan made on another store with the same dataset names trained with 40% of its rows missing;
    with no dataset in common it failed only after Ray started. Both are refused up front, naming the numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polyglot_lion.data.balance import PLAN_FILE, SUMMARY_FILE, check_plan_against_store
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    table = pq.read_table(f"{plan}/{PLAN_FILE}")
    ids = sorted(set(table["id"].to_pylist()))
    foreign = set(ids[: int(0.4 * len(ids))])  # 40% of the plan's utterances exist only in the other store
    for name, column, value in (("same-names", "id", lambda v: f"other-{v}" if v in foreign else v),
                                ("no-common", "dataset", lambda v: f"elsewhere_{v}")):
        d = tmp_path / name
        d.mkdir()
        col = table.schema.get_field_index(column)
        pq.write_table(table.set_column(col, column, pa.array([value(v) for v in table[column].to_pylist()])),
                       d / PLAN_FILE)
        (d / SUMMARY_FILE).write_text(json.dumps({"store": "/data/other-store", "store_fingerprint": "0123abcd"}))
        with pytest.raises(ValueError) as e:
            train(load_config(CONFIG, _overrides(tmp_path, store, str(d), name)))
        msg = str(e.value)
        missing = len(foreign) if name == "same-names" else len(ids)
        assert f"{missing} of the {len(ids)} utterances it uses are not in data.store {store}" in msg, msg
        assert "missing by dataset: " in msg and "made from store '/data/other-store' (fingerprint 0123abcd)" in msg
        assert not (tmp_path / "runs" / name).exists()  # nothing written
    assert check_plan_against_store(store, plan) == {}  # the store's own plan fits


def test_sigterm_during_training_ends_the_mlflow_run_killed(tmp_path, corpus_store):
    """A training job stopped with SIGTERM (``ray job stop``, a scheduler): its MLflow run ends KILLED with an end
    time, not RUNNING forever; the process exits 143. The job joins the session's Ray (RAY_ADDRESS), as a job that
    ``ray job stop`` stops has joined its cluster; the Ray it would start itself costs ~12 s of the suite."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    import ray
    from mlflow.tracking import MlflowClient

    store, plan = corpus_store
    args = _overrides(tmp_path, store, plan, "stopped", **{"train.max_steps": 100000, "train.log_every": 1})
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1",
               RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    proc = subprocess.Popen([sys.executable, "-m", "polyglot_lion.cli", "train", "--config", CONFIG, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []

    def read():  # the job's log, line by line as it comes
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + 300
        while not any(line.startswith("step ") and "loss" in line for line in lines):  # a step was trained
            assert proc.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(lines)
    assert proc.returncode == 143, out[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("polyglot-lion").experiment_id])
    assert run.info.status == "KILLED" and run.info.end_time, run.info
    assert "RunKilled" in run.data.tags["error"]


@pytest.mark.ray
def test_a_time_budget_ends_training_early_with_a_checkpoint_and_resumes_spent(tmp_path, corpus_store):
    from polyglot_lion.train.run import train

    store, plan = corpus_store
    cfg = load_config(CONFIG, _overrides(tmp_path, store, plan, "budget", **{
        "train.max_steps": 100000, "train.max_minutes": 0.05, "train.log_every": 2,
        "train.checkpoint_every": 100000, "train.warmup_ratio": 0.0}))
    out = train(cfg)
    step = out["metrics"]["step"]
    assert 2 <= step < 100000 and step % 2 == 0  # ended at a log step once 3 s were spent, not at max_steps
    assert out["out_of_time_at_step"] == step == out["model_step"] and out["model_version"]  # checkpointed, registered
    spent = dict(_history(tmp_path, out["mlflow_run_id"], "train_s"))
    assert spent[step] >= 3.0 and all(v < 3.0 for s, v in spent.items() if s < step)
    # (the schedule on the clock: test_train.py; here the first read's start-up alone may spend the 3 s)
    again = train(cfg)  # the same run again: its budget is spent, nothing is trained or registered
    assert again["already_finished"] and again["metrics"]["step"] == step
