"""The GPU benchmarks never run on a GPU in CI: their --smoke mode (tiny model, CPU) keeps them from rotting,
and the real 0.6B / 1.7B configs are checked by parameter count on the meta device (nothing allocated)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polyglot_lion.model.sizes import qwen3_asr_config

pytestmark = pytest.mark.slow  # benchmark scripts in subprocesses, on CPU

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(script: str, tmp_path: Path, *extra: str, timeout: int = 300) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--smoke", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    return result


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> dict:
    """``gpu_train.py --smoke`` at its defaults (fp32, the platform's step), once for the tests that compare
    a variant with it; with ``--profile``, whose steps come after the timed ones (the timed figures, losses and
    gradient norms are the same without it), for the profile test."""
    return run_smoke("gpu_train", tmp_path_factory.mktemp("gpu_train"), "--profile")


def test_gpu_train_smoke(default_run):
    r = default_run
    assert r["benchmark"] == "gpu_train" and r["smoke"] and r["device"] == "cpu" and r["dtype"] == "fp32"
    assert (r["batch_size"], r["grad_accum"]) == (2, 2)
    for key in ("params", "step_s", "samples_per_s", "audio_s_per_s", "model_tflops_per_s", "peak_memory_gib",
                "padding_efficiency", "final_loss"):
        assert r[key] > 0, key
    assert r["audio_s_per_s"] > r["samples_per_s"]  # clips of 1-2 s
    assert r["mfu"] is None and r["peak_tflops"] is None  # no nominal CPU peak
    assert r["pool_steps"] == 1 and r["compiles_in_timed_steps"] == 0
    # per-step times (CUDA events on a GPU): one per timed step, adding up to about the timed wall
    assert len(r["step_times_s"]) == r["timed_steps"] and 0 < r["step_s_median"] <= r["step_s_max"]
    assert sum(r["step_times_s"]) == pytest.approx(r["step_s"] * r["timed_steps"], rel=0.1)


@pytest.mark.timeout(1500)
def test_gpu_train_compiled_layers_train_the_same(tmp_path):
    """``--compile`` (torch.compile per decoder and encoder layer, a route to higher MFU on a GPU) runs through the
    batched encoder attention and gives the eager step's losses and gradient norms (on CPU: ~90 s, nearly all
    compiling). With ``--pool-steps 3`` every timed step has lengths the warm-up did not see, and nothing compiles
    again. The mode is ``reduce-overhead`` (CUDA graphs on a GPU; on CPU inductor compiles it as ``default``), so
    the CUDA-graph step's own parts run here too: gradient buffers kept between steps, a step mark per
    micro-batch; its batches padded to a grid of shapes as CUDA graphs want them (``--token-multiple``,
    ``--frame-multiple``). ``compare_steps.py``, which checks that on the GPU, agrees and catches a lost
    gradient."""
    eager = run_smoke("gpu_train", tmp_path, "--pool-steps", "3")
    (tmp_path / "eager.json").write_text(json.dumps(eager))
    compiled = run_smoke("gpu_train", tmp_path, "--compile", "reduce-overhead", "--pool-steps", "3",
                         "--token-multiple", "16", "--frame-multiple", "64", timeout=1400)  # on a grid of shapes
    assert compiled["variant"]["compile"] and not eager["variant"]["compile"]
    assert compiled["variant"]["compile_mode"] == "reduce-overhead" and eager["variant"]["compile_mode"] is None
    assert compiled["pool_steps"] == 3 and compiled["compiles_in_timed_steps"] == 0
    assert (compiled["token_multiple"], compiled["frame_multiple"]) == (16, 64)
    assert len(compiled["losses"]) == len(compiled["grad_norms"]) == compiled["timed_steps"]
    assert compiled["losses"] == pytest.approx(eager["losses"], rel=1e-4)
    assert compiled["grad_norms"] == pytest.approx(eager["grad_norms"], rel=1e-3)
    assert compiled["final_loss"] == compiled["losses"][-1]
    # the GPU run's check that the graphs really ran: inductor's count of graphs run without one (a CPU has no
    # CUDA graphs, so here every compiled graph is one of them)
    assert eager["cudagraph_skips"] == 0 and compiled["cudagraph_skips"] > 0

    def compare(candidate: dict) -> subprocess.CompletedProcess:
        (tmp_path / "cand.json").write_text(json.dumps(candidate))
        return subprocess.run([sys.executable, "benchmarks/compare_steps.py", str(tmp_path / "eager.json"),
                               str(tmp_path / "cand.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)

    same = compare(compiled)
    assert same.returncode == 0 and "same training" in same.stdout, same.stdout + same.stderr
    assert "note: cand ran" in same.stdout and "without a CUDA graph" in same.stdout, same.stdout
    assert "median step: ref " in same.stdout and "x the speed" in same.stdout, same.stdout
    # about half the first step's gradient norm (of 2 micro-batches, the first's .grad overwritten): caught
    lost = compare({**compiled, "grad_norms": [compiled["grad_norms"][0] * 0.5, *compiled["grad_norms"][1:]]})
    assert lost.returncode == 1 and "DIFFERENT" in lost.stdout, lost.stdout + lost.stderr
    other = compare({**compiled, "batch_size": 4})  # not the same steps: refused, not compared
    assert other.returncode == 2 and "batch_size is 2 against 4" in other.stdout, other.stdout


def test_gpu_train_profile_smoke(default_run):
    """``--profile`` (the GPU runs' breakdown: timed phases, op tables, kernel and sync counts) works on CPU: the
    split of a step into its phases adds up, and the CPU op table is there."""
    prof = default_run["profile"]
    assert "error" not in prof, prof
    split = prof["split_s"]
    assert split["forward_encoder"] > 0 and split["forward_rest"] > 0 and split["backward"] > 0
    parts = sum(v for k, v in split.items() if k != "total")
    assert parts <= split["total"] * 1.05 + 1e-3
    assert "aten::" in prof["table_by_self_cpu"] and prof["profiled_steps"] == 2


def test_gpu_inference_smoke(tmp_path):
    r = run_smoke("gpu_inference", tmp_path)
    assert r["benchmark"] == "gpu_inference" and r["smoke"] and r["device"] == "cpu"
    assert r["engine"] == "static" and r["compile"] is None  # "auto" is eager on CPU
    assert [p["batch_size"] for p in r["sweep"]] == [1, 2]
    for point in r["sweep"]:
        assert point["samples"] > 0 and point["audio_s_per_s"] > 0 and point["new_tokens_per_s"] > 0
        assert point["s_per_sample"] >= point["generate_s_per_sample"] > 0
    assert r["latency_10s_s"] > 0 and r["latency_10s_hf_s"] > 0
    assert r["audio_s_per_s_b128"] is None and r["meets_throughput_goal"] is False  # batch 128 not in the smoke
    assert (r["goal_audio_s_per_s_b128"], r["goal_latency_10s_s"]) == (2000.0, 0.10)
    assert isinstance(r["meets_latency_goal"], bool)


def test_decode_benchmark_smoke(tmp_path):
    """``benchmarks/decode.py`` (the CPU comparison of the engine with generate()): both engines, same ids."""
    r = run_smoke("decode", tmp_path)
    assert r["benchmark"] == "decode" and r["smoke"] and r["identical"]
    assert [p["batch_size"] for p in r["results"]] == [1, 2]
    for point in r["results"]:
        assert set(point["engines"]) == {"hf", "eager"} and point["tokens"] == point["rows"] * 8
        assert all(e["tokens_per_s"] > 0 for e in point["engines"].values())


@pytest.mark.parametrize("size, low, high", [("0.6b", 0.77e9, 0.80e9), ("1.7b", 1.98e9, 2.10e9)])
def test_real_sizes_have_the_published_parameter_counts(size, low, high):
    from transformers import Qwen3ASRForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3ASRForConditionalGeneration(qwen3_asr_config(size))
    n = sum(p.numel() for p in model.parameters())  # tied lm_head counted once
    assert low < n < high, f"{size}: {n / 1e9:.3f}B parameters"
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert model.config.text_config.vocab_size == 151_936 and model.config.audio_config.num_mel_bins == 128


def test_gpu_train_platform_step_and_the_models_own_loss_agree(tmp_path, default_run):
    """The benchmark trains with the platform's step (answer-only loss, channels-last convs, host-computed layout)
    by default; ``--loss full --conv-layout default`` is the model's own loss and layout (and transformers' forward
    reading its sizes back), ``--layout device`` the same step with transformers' forward: the same loss after the
    same steps."""
    ours = default_run
    stock = run_smoke("gpu_train", tmp_path, "--loss", "full", "--conv-layout", "default")
    assert [ours["variant"][k] for k in ("loss", "conv_layout", "layout")] == ["answer", "channels_last", "host"]
    assert [stock["variant"][k] for k in ("loss", "conv_layout", "layout")] == ["full", "default", "device"]
    assert ours["final_loss"] == pytest.approx(stock["final_loss"], rel=1e-5)
    device_layout = run_smoke("gpu_train", tmp_path, "--layout", "device")  # the platform's step, sizes read back
    assert device_layout["final_loss"] == pytest.approx(ours["final_loss"], rel=1e-6)


def test_training_flops_count_lm_head_where_it_runs(benchmark_module):
    """MFU counts the FLOPs a step does: with the answer-only loss, lm_head only on the positions that predict an
    answer token, so the two counts differ by exactly 3 x 2 x hidden x vocab x the other positions."""
    gpu_train = benchmark_module("gpu_train")
    config = qwen3_asr_config("0.6b")
    labels = torch.full((2, 10), -100)
    labels[0, 6:9], labels[1, 4:6] = 7, 7  # 3 + 2 answer tokens; sequences of 9 and 6 real tokens
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, :9], mask[1, :6] = 1, 1
    batch = {"labels": labels, "attention_mask": mask, "input_features_mask": torch.ones(2, 200, dtype=torch.long)}
    full, answer = gpu_train.training_flops(config, batch, False), gpu_train.training_flops(config, batch, True)
    t = config.text_config
    # positions that predict an answer token: 5 (0-based 5..7 and 3..4); all real positions: 15
    assert full - answer == pytest.approx(3 * 2 * t.hidden_size * t.vocab_size * (15 - 5))


def test_peak_tflops_table(benchmark_module):
    gpu_train = benchmark_module("gpu_train")
    assert gpu_train.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_train.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_train.peak_tflops("NVIDIA H200") == 989.4
    assert gpu_train.peak_tflops("NVIDIA RTX PRO 6000 Blackwell Workstation Edition") == 503.8
    assert gpu_train.peak_tflops("Some Other GPU") is None


def test_gpu_deepspeed_smoke(tmp_path):
    """The GPU DeepSpeed check (ZeRO without Ray, checkpoint, 16-bit gather, reload) in its CPU mode. ZeRO-2 here;
    ZeRO-3 runs through Ray Train in test_train_ray.py (each stage is a DeepSpeed start-up of its own)."""
    r = run_smoke("gpu_deepspeed", tmp_path, "--stages", "2")
    assert r["benchmark"] == "gpu_deepspeed" and r["smoke"] and r["all_ok"]
    assert [s["stage"] for s in r["stages"]] == [2]
    for s in r["stages"]:
        assert s["ok"] and s["gather_load_ok"] and s["n_mismatched"] == 0 and s["n_missing"] == 0


def test_gpu_train_bf16_weights_with_master_copies(tmp_path, default_run):
    """``--weights bf16`` (bf16 weights, fp32 master copies in the optimizer, no autocast) runs the same steps:
    the loss stays within bf16's rounding of the fp32 run's."""
    fp32 = default_run
    bf16 = run_smoke("gpu_train", tmp_path, "--weights", "bf16")
    assert bf16["dtype"] == "bf16-weights" and bf16["variant"]["weights"] == "bf16"
    assert fp32["variant"]["weights"] == "fp32"
    assert bf16["final_loss"] == pytest.approx(fp32["final_loss"], rel=1e-3)  # 2e-5 apart here


def test_gpu_check_refuses_an_unknown_group(tmp_path):
    """gpu_check.sh runs a group (all, graphs, mfu, big, rest) on a lent GPU; a wrong name fails at once, before
    any work."""
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "mfuu"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path / "gpu")}, timeout=60)
    assert proc.returncode == 2
    assert "unknown group 'mfuu' (allowed: all, graphs, mfu, big, rest)" in proc.stderr
    assert not (tmp_path / "gpu").exists()
