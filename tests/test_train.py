"""Training without Ray: config validation, checkpoint selection and early stopping, the step's options, shuffling
and shard reads, epochs to steps, the progress line and bar. The runs through Ray Train are in test_train_ray.py."""

import dataclasses

import pytest

from polyglot_lion.config import ConfigError, load_config

CONFIG = "jobs/configs/qwen3_asr/tiny_cpu.yaml"


def test_shipped_configs_load_and_validate():
    import glob

    files = sorted(glob.glob("jobs/configs/qwen3_asr/*.yaml"))
    assert files
    for f in files:
        load_config(f, check_paths=False)


def test_bad_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, ["train.max_stepz=3", "train.lr=fast", f"data.store={tmp_path}/nowhere"])
    msg = str(e.value)
    assert "unknown key train.max_stepz" in msg and "train.lr must be float (is 'fast')" in msg
    assert "data.store: " in msg and "is not a store" in msg


def test_deepspeed_refuses_compile_and_our_bf16_weights():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, ["scaling.deepspeed_stage=2", "model.compile=true", "train.bf16_weights=true"],
                    check_paths=False)
    msg = str(e.value)
    for key in ("model.compile", "train.bf16_weights"):
        assert f"{key} is not supported with scaling.deepspeed_stage=2" in msg


def test_dev_eval_options_are_checked(tmp_path):
    """train.dev_eval_every: >= 0, needs a dev split (named, and in the store), refused under ZeRO-3."""
    for over, message in ((["train.dev_eval_every=-1"], "train.dev_eval_every must be >= 0 (is -1; 0: off)"),
                          (["train.dev_eval_every=5", "data.dev_split="], "needs a dev split to transcribe"),
                          (["train.dev_eval_every=5", "scaling.deepspeed_stage=3", "scaling.num_workers=2"],
                           "train.dev_eval_every is not supported with scaling.deepspeed_stage=3")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(CONFIG, over, check_paths=False)
    assert load_config(CONFIG, ["train.dev_eval_every=5", "scaling.deepspeed_stage=2", "scaling.num_workers=2"],
                       check_paths=False).train.dev_eval_every == 5
    store = tmp_path / "store"
    (store / "data" / "train" / "en" / "set1").mkdir(parents=True)
    (store / "data" / "train" / "en" / "set1" / "_meta.json").write_text("{}")
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "plan.parquet").write_text("")
    with pytest.raises(ConfigError, match=r"train.dev_eval_every and train.select_by=dev_loss: store .* has no "
                                          r"'dev' split \(data.dev_split; the store has \['train'\]\)"):
        load_config(CONFIG, ["train.dev_eval_every=5", "train.select_by=dev_loss", "train.checkpoint_every=100",
                             f"data.store={store}", f"data.plan={tmp_path}/plan"])


def test_checkpoint_selection_and_what_is_kept():
    from polyglot_lion.train.checkpoints import best_checkpoint, stale_checkpoints

    c = [("s1", {"dev_loss": 3.0}), ("s2", {"dev_loss": 1.0}), ("s3", {"dev_loss": 2.0}), ("s4", {"dev_loss": 1.0}),
         ("s5", {"dev_loss": float("nan")}), ("s6", {})]
    assert best_checkpoint(c, "dev_loss") == "s4"  # lowest; the later one on a tie
    assert best_checkpoint(c[:3], "dev_loss") == "s2" and best_checkpoint(c, "last") == "s6"
    assert best_checkpoint(c[4:], "dev_loss") == "s6"  # nothing scored: the latest
    assert stale_checkpoints(c, 2, "last") == ["s1", "s2", "s3", "s4"]
    assert stale_checkpoints(c, 2, "dev_loss") == ["s1", "s3", "s5"]  # the best 2 and the latest stay
    assert stale_checkpoints(c[:4], 1, "dev_loss") == ["s1", "s2", "s3"]  # the latest is the best: only it stays
    with pytest.raises(ConfigError, match=r"train.select_by=dev_loss needs that metric at every checkpoint: "
                                          r"train.dev_every \(is 30\) must be >= 1 and divide "
                                          r"train.checkpoint_every \(is 50\)"):
        load_config(CONFIG, ["train.select_by=dev_loss", "train.dev_every=30"], check_paths=False)
    with pytest.raises(ConfigError, match=r"train.select_by must be one of \['last', 'dev_loss', "):
        load_config(CONFIG, ["train.select_by=wer"], check_paths=False)


def test_early_stopping_counts_checkpoints_without_improvement():
    from polyglot_lion.train.checkpoints import checkpoints_since_best

    nan = float("nan")
    assert checkpoints_since_best([]) == 0
    assert checkpoints_since_best([5.0]) == 0  # the first score is the best so far
    assert checkpoints_since_best([5.0, 4.0, 4.5, 4.0]) == 2  # a tie is no improvement
    assert checkpoints_since_best([5.0, 4.0, 4.5, 3.9]) == 0
    assert checkpoints_since_best([5.0, 4.0, 4.5, 3.9], min_delta=0.5) == 2  # 4.0 beat 5.0 by more than 0.5
    assert checkpoints_since_best([5.0, nan, nan]) == 2 and checkpoints_since_best([nan, 7.0]) == 0
    for over, message in ((["train.early_stop_patience=2"], "train.early_stop_patience needs a metric to watch: "
                                                            "set train.select_by to dev_loss or dev_capped_error_rate"),
                          (["train.early_stop_patience=-1"], r"train.early_stop_patience must be >= 0 \(is -1; 0: off\)"),
                          (["train.early_stop_min_delta=-0.1"], r"train.early_stop_min_delta must be >= 0 \(is -0.1\)")):
        with pytest.raises(ConfigError, match=message):
            load_config(CONFIG, over, check_paths=False)
    cfg = load_config(CONFIG, ["train.early_stop_patience=3", "train.early_stop_min_delta=0.5",
                               "train.select_by=dev_loss"], check_paths=False)
    assert (cfg.train.early_stop_patience, cfg.train.early_stop_min_delta) == (3, 0.5)


def test_dev_metrics_from_an_evaluation():
    from polyglot_lion.evaluation.evaluate import dev_metrics

    res = {"average_capped": 60.0, "exact_match": 12.5, "skipped": {"b": {"utterances": 1}},
           "benchmarks": {"a": {"language": "en", "capped_error_rate": 100.0, "utterances": 3},
                          "b": {"language": "en", "capped_error_rate": 40.0, "utterances": 2},
                          "c": {"language": "zh", "capped_error_rate": 40.0, "utterances": 3}}}
    assert dev_metrics(res) == {"dev_capped_error_rate": 60.0, "dev_exact_match": 12.5, "dev_eval_utterances": 8,
                                "dev_capped_error_rate_en": 70.0, "dev_capped_error_rate_zh": 40.0,
                                "dev_eval_skipped_utterances": 1}


def test_cuda_graph_options_are_checked_together():
    """model.compile_mode needs model.compile; the shape grid needs the host layout, and its multiples are >= 1;
    the config's modes are the ones compile_layers takes."""
    from polyglot_lion.config import ModelSection
    from polyglot_lion.model.efficiency import COMPILE_MODES

    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, ["model.compile_mode=reduce-overhead", "data.token_multiple=0", "data.frame_multiple=64",
                             "model.host_layout=false"], check_paths=False)
    msg = str(e.value)
    assert "model.compile_mode=reduce-overhead needs model.compile: true" in msg
    assert "data.token_multiple must be >= 1 (is 0)" in msg
    assert "data.token_multiple / data.frame_multiple need model.host_layout: true" in msg
    with pytest.raises(ConfigError, match="model.compile_mode must be one of"):
        load_config(CONFIG, ["model.compile_mode=fast"], check_paths=False)
    cfg = load_config(CONFIG, ["model.compile=true", "model.compile_mode=reduce-overhead", "data.token_multiple=32",
                               "data.frame_multiple=64"], check_paths=False)
    assert (cfg.model.compile_mode, cfg.data.token_multiple, cfg.data.frame_multiple) == ("reduce-overhead", 32, 64)
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(ModelSection)}["compile_mode"]
    assert tuple(choices) == COMPILE_MODES


def test_shuffle_rows_mixes_datasets_deterministically():
    from polyglot_lion.train.data import shuffle_rows

    # the store streams dataset after dataset (here 4 x 300 rows); the buffer must mix them
    stream = [(ds, i) for ds in "abcd" for i in range(300)]
    out = list(shuffle_rows(iter(stream), 400, seed=7))
    assert sorted(out) == sorted(stream)  # every row exactly once
    assert out == list(shuffle_rows(iter(stream), 400, seed=7))  # resume replays the same order
    assert out != list(shuffle_rows(iter(stream), 400, seed=8))
    first = {ds for ds, _ in out[:100]}
    assert len(first) >= 2, first  # stream order would give only 'a'
    assert list(shuffle_rows(iter(stream), 0, seed=7)) == stream  # 0: off
    assert sorted(shuffle_rows(iter(stream[:5]), 400, seed=1)) == stream[:5]


class _Shard:
    """A stand-in for a streaming-split shard: each ``iter_rows()`` is one read (an epoch) of 5 rows; it records
    when each read started and can fail in the middle of one."""

    def __init__(self, fail_in_read=None):
        import threading

        self.started, self.fail_in_read, self.lock = [], fail_in_read, threading.Lock()

    def iter_rows(self):
        with self.lock:
            read = len(self.started)
            self.started.append(read)
        for i in range(5):
            if read == self.fail_in_read and i == 2:
                raise OSError(f"bad shard file in read {read}")
            yield {"read": read, "i": i}


def _wait_for(cond, timeout=10.0):
    import time

    end = time.time() + timeout
    while not cond() and time.time() < end:
        time.sleep(0.01)
    return cond()


def test_shard_reads_start_the_next_read_while_this_one_trains():
    from polyglot_lion.train.data import ShardReads

    shard = _Shard()
    reads = ShardReads(shard, first_read=3, ahead_rows=4)
    try:
        rows = reads.rows(3)
        first = [next(rows) for _ in range(5)]  # read 3 drained into the loop's buffers, not yet finished
        # the next read is started in the background, before the loop asks for it
        assert _wait_for(lambda: len(shard.started) == 2), shard.started
        assert list(rows) == []
        assert first + list(reads.rows(4)) + list(reads.rows(5)) == [
            {"read": r, "i": i} for r in (0, 1, 2) for i in range(5)]  # the shard's rows, in its order
        with pytest.raises(ValueError, match="read 9 asked for, but the next read is 6"):
            next(reads.rows(9))
        partial = reads.rows(6)
        assert next(partial) == {"read": 3, "i": 0}
        assert next(reads.rows(7)) == {"read": 4, "i": 0}  # the rest of an unfinished read is passed over
    finally:
        reads.close()

    off = _Shard()
    reads = ShardReads(off, first_read=0, ahead_rows=0)  # off: a read starts when it is asked for
    assert len(list(reads.rows(0))) == 5 and off.started == [0]
    assert len(list(reads.rows(1))) == 5 and off.started == [0, 1]


def test_shard_reads_raise_a_pipeline_error_in_the_loop():
    from polyglot_lion.train.data import ShardReads

    reads = ShardReads(_Shard(fail_in_read=1), first_read=0, ahead_rows=2)
    try:
        assert len(list(reads.rows(0))) == 5
        rows = reads.rows(1)
        assert [next(rows), next(rows)] == [{"read": 1, "i": 0}, {"read": 1, "i": 1}]
        with pytest.raises(OSError, match="bad shard file in read 1"):
            next(rows)
    finally:
        reads.close()


def test_negative_shuffle_buffer_is_refused():
    with pytest.raises(ConfigError, match=r"data.shuffle_buffer must be >= 0 \(is -1\)"):
        load_config(CONFIG, ["data.shuffle_buffer=-1"], check_paths=False)
    with pytest.raises(ConfigError, match=r"data.plan_passes must be >= 1 \(is 0\)"):
        load_config(CONFIG, ["data.plan_passes=0"], check_paths=False)
    with pytest.raises(ConfigError, match=r"data.read_ahead_rows must be >= 0 \(is -2; 0: no read-ahead\)"):
        load_config(CONFIG, ["data.read_ahead_rows=-2"], check_paths=False)


def test_deepspeed_on_cpu_does_not_build_the_inference_all_reduce_op():
    """ZeRO training reduces through torch.distributed; the shared-memory op that only DeepSpeed's tensor-parallel
    inference calls is not compiled: DeepSpeed's own ``build_shm_op`` returns None without building it."""
    import deepspeed.ops
    from deepspeed.comm.torch import build_shm_op

    from polyglot_lion.train.zero import skip_shm_all_reduce_build

    skip_shm_all_reduce_build()
    assert deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] is False
    assert build_shm_op() is None


def test_deepspeed_config_is_built_and_validated():
    from polyglot_lion.train.zero import check_deepspeed_config, deepspeed_config

    cfg = load_config("jobs/configs/qwen3_asr/1.7b_deepspeed_zero3_8gpu.yaml", check_paths=False)
    ds = deepspeed_config(cfg)
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"]
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert check_deepspeed_config(ds)["zero_stage"] == 3
    ds["gradient_accumulation_steps"] = -1
    with pytest.raises(ValueError, match="invalid DeepSpeed config"):
        check_deepspeed_config(ds)
    with pytest.raises(ConfigError, match="scaling.deepspeed_stage must be one of"):
        load_config(CONFIG, ["scaling.deepspeed_stage=1"], check_paths=False)


def test_steps_for_epochs_counts_the_plans_micro_batches():
    from polyglot_lion.train.data import steps_for_epochs

    args = dict(grad_accum=1, workers=1, window=256, max_frames=8000, max_batch_size=16)
    assert steps_for_epochs([5.0] * 10, 1, fixed_batch_size=4, **args) == 3  # ceil(10 / 4)
    assert steps_for_epochs([5.0] * 10, 2.5, fixed_batch_size=4, **args) == 8  # ceil(2.5 x 3)
    assert steps_for_epochs([5.0] * 10, 1, fixed_batch_size=4, **{**args, "workers": 2}) == 2
    # bucketed: 16 clips of 5 s (500 frames) fill 8000 frames exactly; 15 s clips (1,500) 5 to a batch
    assert steps_for_epochs([5.0] * 32, 1, **args) == 2
    assert steps_for_epochs([14.2] * 10, 1, **args) == 2 and steps_for_epochs([14.2] * 10, 1, **{**args, "grad_accum": 2}) == 1
    with pytest.raises(ValueError, match="epochs must be > 0"):
        steps_for_epochs([5.0], 0, **args)


def test_progress_line_says_step_loss_throughput_and_time_left():
    from polyglot_lion.train.metrics import progress_line

    m = {"step": 150, "loss": 2.31415, "lr": 9.8e-5, "grad_norm": 1.2345, "samples_per_s": 32.14,
         "audio_s_per_s": 158.2}
    line = progress_line(m, 3000, elapsed_s=100.0, steps_done=50)  # 2 s a step, 2,850 steps to go
    assert line == ("step 150/3000 (5%) loss 2.3142 lr 9.80e-05 grad_norm 1.234 32.1 samples/s 158 audio-s/s, "
                    "1.6 h left")
    assert progress_line({**m, "dev_loss": 2.5}, 3000, 100.0, 50).endswith("dev_loss 2.5000, 1.6 h left")
    assert progress_line({**m, "dev_loss": 2.5, "dev_capped_error_rate": 41.27}, 3000, 100.0, 50).endswith(
        "dev_loss 2.5000 dev_error_rate 41.3%, 1.6 h left")
    assert progress_line(m, 160, 100.0, 50).endswith(", 20 s left")
    assert progress_line(m, 200, 100.0, 50).endswith(", 1.7 min left")
    assert progress_line(m, 3000, 0.0, 0).endswith(", ? left")  # nothing timed yet
    assert progress_line({**m, "skipped_utterances": 3}, 3000, 100.0, 50).endswith(
        " (3 utterances skipped), 1.6 h left")


def test_driver_progress_bar_follows_the_runs_mlflow_history(tmp_path):
    """train(progress=True)'s bar (the demo's; its quiet driver hides the workers' lines) moves with the steps the
    run logs to MLflow, and ends on the last one."""
    import time

    from mlflow.tracking import MlflowClient

    from polyglot_lion.train.run import _ProgressBar

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("progress")).info.run_id
    with _ProgressBar(uri, run_id, max_steps=30, every_s=0.05) as progress:
        for step, loss in ((10, 3.0), (20, 2.5)):
            client.log_metric(run_id, "loss", loss, step=step)
            deadline = time.time() + 10
            while progress.bar.n != step and time.time() < deadline:
                time.sleep(0.05)
            assert progress.bar.n == step
        client.log_metric(run_id, "loss", 2.0, step=30)
    assert progress.bar.n == 30 and progress.bar.postfix == "loss=2.0000"  # the final poll at the exit
    assert not progress.thread.is_alive()


def test_local_checkpoints_ignore_a_copy_in_progress(tmp_path):
    from polyglot_lion.train.checkpoints import latest_local_checkpoint, local_checkpoints

    assert latest_local_checkpoint(str(tmp_path)) is None
    for name in ("checkpoint_step_00000003", "checkpoint_step_00000006", "checkpoint_step_00000009.partial"):
        (tmp_path / name).mkdir()
    assert [p.rsplit("/", 1)[1] for p in local_checkpoints(str(tmp_path))] == [
        "checkpoint_step_00000003", "checkpoint_step_00000006"]
    assert latest_local_checkpoint(str(tmp_path)).path.endswith("checkpoint_step_00000006")


def test_a_time_budget_drives_the_schedule_and_ends_the_run():
    from polyglot_lion.train.budget import TimeBudget
    from polyglot_lion.train.step import warmup_cosine

    clock = {"f": 0.0}
    f = warmup_cosine(1000, 100, time_progress=lambda: clock["f"])
    plain = warmup_cosine(1000, 100)
    assert f(50) == plain(50) and f(600) == plain(600)  # the steps are further along: the step schedule
    clock["f"] = 0.5  # half the time spent at step 50: the schedule is at step 500's value
    assert f(50) == pytest.approx(plain(500)) and f(600) == plain(600)
    clock["f"] = 1.0
    assert f(10) == pytest.approx(0.0)  # the budget spent: decayed to 0 whatever the step

    b = TimeBudget(max_minutes=1.0, spent_s=30.0)  # a resumed run that had spent half its budget
    assert b.progress() == pytest.approx(0.5) and not b.done
    assert not b.out_of_time(3, every=2) and b.progress() == pytest.approx(0.5)  # not a log step: no reading
    b.spent_before = 61.0  # as if a minute had passed
    assert b.out_of_time(4, every=2) and b.done and b.progress() > 1.0
    assert TimeBudget(max_minutes=1.0, spent_s=60.0).done  # resumed with its budget spent: nothing to train
    none = TimeBudget(max_minutes=0.0)
    assert not none.out_of_time(10, every=10) and none.progress() == 0.0 and not none.done


def test_max_minutes_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"train.max_minutes must be >= 0 \(is -1.0"):
        load_config(None, ["train.max_minutes=-1"])
