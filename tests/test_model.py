"""Model loading, the original-format trap, conversion, and the tiny from-scratch builder."""

import json

import numpy as np
import pytest
import torch

from polyglot_lion.model.convert import convert_checkpoint, rename_weight
from polyglot_lion.model.loading import CheckpointFormatError, checkpoint_format, load_model, parameter_count
from polyglot_lion.model.tiny import build_tiny_model, save_tiny_checkpoint
from polyglot_lion.testing import TINY_TEXTS, write_original_format_checkpoint


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(TINY_TEXTS, seed=0)


def test_prompt_is_the_qwen3_asr_chat_format(tiny):
    _, processor = tiny
    prompt = processor.apply_transcription_request(np.zeros(16000, np.float32), tokenize=False)[0]
    assert prompt == ("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>"
                      "<|im_end|>\n<|im_start|>assistant\n")


def test_tiny_model_forward_and_generate(tiny):
    model, processor = tiny
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 5e6
    audio = [np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1]
    prompts = processor.apply_transcription_request(audio, tokenize=False)
    batch = processor(text=[prompts[0] + "language None<asr_text>hello world<|im_end|>"], audio=audio,
                      output_labels=True)
    out = model(**batch)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    gen = model.generate(**processor.apply_transcription_request(audio), max_new_tokens=5, do_sample=False)
    assert gen.shape[1] > batch["input_ids"].shape[1] - 10


def test_from_scratch_encoder_is_heard(tiny):
    """The conv front-end's output must be on the scale of the position embedding (stock init: ~1e-4 vs ~0.5)."""
    model, processor = tiny
    tower = model.model.audio_tower
    feats = processor.feature_extractor(np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.1,
                                        sampling_rate=16000, return_tensors="pt")["input_features"]
    x = feats[:, :, :100].reshape(1, 1, 128, 100)
    with torch.no_grad():
        h = torch.nn.functional.gelu(tower.conv2d1(x))
        h = torch.nn.functional.gelu(tower.conv2d2(h))
        h = torch.nn.functional.gelu(tower.conv2d3(h))
        b, c, f, t = h.shape
        conv = tower.conv_out(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
    pos = tower.positional_embedding.positional_embedding[:t]
    ratio = conv.std().item() / pos.std().item()
    assert 0.1 < ratio < 10, ratio


def test_original_format_is_refused_then_converted(tiny, tmp_path):
    model, processor = tiny
    orig = write_original_format_checkpoint(model, processor, tmp_path / "orig")
    assert checkpoint_format(orig) == "original"
    with pytest.raises(CheckpointFormatError, match="RANDOM weights.*polyglot-lion convert"):
        load_model(orig)
    stats = convert_checkpoint(orig, str(tmp_path / "hf"))
    assert stats["renamed"] == stats["weights"]
    assert checkpoint_format(tmp_path / "hf") == "transformers"
    loaded, proc2 = load_model(str(tmp_path / "hf"))
    want, got = model.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert proc2.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    with pytest.raises(CheckpointFormatError, match="already in transformers format"):
        convert_checkpoint(str(tmp_path / "hf"), str(tmp_path / "again"))


def test_rename_rules():
    assert rename_weight("thinker.model.layers.0.mlp.up_proj.weight") == "model.language_model.layers.0.mlp.up_proj.weight"
    assert rename_weight("thinker.lm_head.weight") == "lm_head.weight"
    assert rename_weight("thinker.audio_tower.proj1.bias") == "model.multi_modal_projector.linear_1.bias"
    assert rename_weight("thinker.audio_tower.conv2d1.weight") == "model.audio_tower.conv2d1.weight"


def test_saved_tiny_checkpoint_loads(tmp_path):
    path = save_tiny_checkpoint(str(tmp_path / "tiny"), TINY_TEXTS)
    model, processor = load_model(path)
    assert json.loads((tmp_path / "tiny" / "config.json").read_text())["model_type"] == "qwen3_asr"
    assert processor.tokenizer.audio_token == "<|audio_pad|>"


def test_parameter_count_reads_one_file_or_shards(tiny, tmp_path):
    model, _ = tiny
    want = sum(p.numel() for p in model.parameters())  # tied embeddings once, as save_pretrained stores them
    model.save_pretrained(tmp_path / "one")
    model.save_pretrained(tmp_path / "shards", max_shard_size="1MB")
    assert len(list((tmp_path / "shards").glob("model-*.safetensors"))) > 1
    assert parameter_count(tmp_path / "one") == parameter_count(tmp_path / "shards") == want


def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="network access or a populated cache"):
        load_model("Qwen/Qwen3-ASR-0.6B-hf", local_files_only=True)


def test_convert_cli(tiny, tmp_path):
    import subprocess
    import sys

    model, processor = tiny
    orig = write_original_format_checkpoint(model, processor, tmp_path / "orig")
    run = lambda *a: subprocess.run([sys.executable, "-m", "polyglot_lion.cli", "convert", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    p = run(orig, str(tmp_path / "hf"))
    assert p.returncode == 0 and "converted" in p.stdout, p.stderr
    p = run(orig, str(tmp_path / "hf"))
    assert p.returncode == 2 and "exists and is not empty" in p.stderr


def test_batched_encoder_attention_equals_the_loop():
    """model.encoder_attention=batched: same loss and gradients as transformers' one-call-per-window loop, on a
    batch of clips of different lengths (several attention windows each, padded frames in the batch)."""
    from polyglot_lion.model.encoder_attention import use_batched_encoder_attention
    from polyglot_lion.model.prompts import PromptEncoder, collate

    rng = np.random.default_rng(0)
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    enc = PromptEncoder(processor, "agnostic")
    batch = collate([enc.encode(rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1, text, "en")
                     for s, text in ((3.2, "hello world"), (11.5, "a longer clip"), (17.0, "the longest one"))],
                    processor.tokenizer.pad_token_id)
    inputs = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    def model_loss():
        return model(**inputs, use_cache=False).loss

    loop_loss, loop_grads = _loss_and_grads(model, model_loss)
    assert use_batched_encoder_attention(model) == len(model.model.audio_tower.layers)
    batched_loss, batched_grads = _loss_and_grads(model, model_loss)
    assert batched_loss == pytest.approx(loop_loss, rel=1e-5)
    assert set(batched_grads) == set(loop_grads)
    for name, g in loop_grads.items():
        torch.testing.assert_close(batched_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # another model in the same process keeps transformers' forward
    other, _ = build_tiny_model(TINY_TEXTS, seed=1)
    assert "forward" not in vars(other.model.audio_tower.layers[0].self_attn)


def _mixed_batch(processor, rng):
    from polyglot_lion.model.prompts import PromptEncoder, collate

    enc = PromptEncoder(processor, "agnostic")
    batch = collate([enc.encode(rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1, text, "en")
                     for s, text in ((2.4, "hello world"), (6.5, "a longer clip"), (9.0, "the longest one"))],
                    processor.tokenizer.pad_token_id)
    return {k: v for k, v in batch.items() if torch.is_tensor(v)}


def _loss_and_grads(model, loss_fn):
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_answer_loss_equals_the_models_loss():
    """answer_loss projects only the answer positions onto the vocabulary: same loss and gradients as the
    model's own loss over all positions (labels -100 outside the answer), on a padded batch."""
    from polyglot_lion.model.answer import answer_loss, answer_positions

    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    inputs = _mixed_batch(processor, np.random.default_rng(0))
    keep, targets = answer_positions(inputs["labels"])
    assert 0 < int(keep.sum()) == targets.numel() < inputs["labels"].numel() // 4  # mostly audio placeholders
    full_loss, full_grads = _loss_and_grads(model, lambda: model(**inputs, use_cache=False).loss)
    kept_loss, kept_grads = _loss_and_grads(model, lambda: answer_loss(model, inputs))
    assert kept_loss == pytest.approx(full_loss, rel=1e-6)
    assert set(kept_grads) == set(full_grads)
    for name, g in full_grads.items():
        torch.testing.assert_close(kept_grads[name], g, rtol=1e-4, atol=1e-7, msg=name)
    no_answer = dict(inputs, labels=torch.full_like(inputs["labels"], -100))
    with pytest.raises(ValueError, match="no answer tokens"):
        answer_loss(model, no_answer)


@pytest.mark.slow  # forward and backward of several batch layouts, with a dispatch counter: tens of seconds
def test_host_layout_equals_the_stock_forward_and_reads_nothing_back():
    """model.host_layout: the sizes computed from the CPU batch give the same loss and gradients as transformers'
    forward (a right-padded batch with a clip under one chunk and one of exactly two; a batch with nothing padded;
    a left-padded one, which keeps transformers' mask; eager attention; the per-window attention loop; a grid of
    padded shapes for CUDA graphs), and the step reads no value back to Python, where the stock forward does it
    2 x clips + 7 times."""
    from polyglot_lion.model.answer import answer_loss
    from polyglot_lion.model.encoder_attention import use_batched_encoder_attention
    from polyglot_lion.model.host_layout import host_inputs, use_host_layout
    from polyglot_lion.model.prompts import PromptEncoder, collate
    from polyglot_lion.testing.host_reads import HostReads

    rng = np.random.default_rng(3)
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    enc = PromptEncoder(processor, "agnostic")
    examples = [enc.encode(rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1, text, "en")
                for s, text in ((0.6, "hi"), (2.0, "hello world"), (6.5, "a longer clip"), (9.0, "the longest"))]
    assert examples[1].n_frames == 200  # exactly two 1-s chunks
    batch = collate(examples, processor.tokenizer.pad_token_id)
    stock_inputs = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    def compare(stock_model, inputs_stock, inputs_host, reads_expected=None):
        def step(inputs):  # forward and backward counted; reading the loss and gradients afterwards is not
            stock_model.zero_grad()
            with HostReads() as reads:
                loss = answer_loss(stock_model, inputs)
                loss.backward()
            return loss.item(), {n: p.grad.clone() for n, p in stock_model.named_parameters() if p.grad is not None}, reads

        ref_loss, ref_grads, stock_reads = step(inputs_stock)
        use_host_layout(stock_model)
        loss, grads, reads = step(inputs_host)
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        assert set(grads) == set(ref_grads)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-7, msg=name)
        return stock_reads, reads

    use_batched_encoder_attention(model)
    with pytest.raises(ValueError, match=r"call host_layout.use_host_layout\(model\) first"):
        answer_loss(model, host_inputs(batch, model))
    stock_reads, reads = compare(model, stock_inputs, host_inputs(batch, model))
    assert stock_reads.total >= 2 * len(examples) + 7, stock_reads.where
    assert reads.total == 0, reads.where

    # a grid of shapes (CUDA graphs): tokens to a multiple of 64, encoder frames to a multiple of 64 in windows of
    # their own; same loss and gradients, still no read
    plain = host_inputs(batch, model)
    grid = host_inputs(batch, model, token_multiple=64, frame_multiple=64)
    assert grid["input_ids"].shape[1] % 64 == 0 and grid["input_ids"].shape[1] > plain["input_ids"].shape[1]
    frames = int(plain["audio_cu_seqlens"][-1])
    assert grid["audio_pad_frames"] == -frames % 64 > 0 and int(grid["audio_cu_seqlens"][-1]) % 64 == 0
    assert grid["audio_max_seqlen"] == plain["audio_max_seqlen"]  # no padded window wider than the real ones
    grid_model, _ = build_tiny_model(TINY_TEXTS, seed=0)
    use_batched_encoder_attention(grid_model)
    _, grid_reads = compare(grid_model, stock_inputs, grid)
    assert grid_reads.total == 0, grid_reads.where
    width = plain["audio_max_seqlen"]
    wide = host_inputs(batch, model, frame_multiple=frames + 2 * width + 1)  # padding in 3 windows: 2 full, 1 frame
    assert wide["audio_cu_seqlens"][len(plain["audio_cu_seqlens"]):].tolist() == [
        frames + width, frames + 2 * width, frames + 2 * width + 1]
    compare(build_tiny_model(TINY_TEXTS, seed=0)[0], stock_inputs, wide)  # transformers' per-window attention
    with pytest.raises(ValueError, match=r"host_inputs: frame_multiple must be an int >= 1 \(is 0\)"):
        host_inputs(batch, model, frame_multiple=0)

    assert "right_padded_mask" in host_inputs(batch, model)  # the forward builds the decoder's mask itself
    one = collate(examples[2:3], processor.tokenizer.pad_token_id)  # nothing padded
    fresh, _ = build_tiny_model(TINY_TEXTS, seed=0)
    compare(fresh, {k: v for k, v in one.items() if torch.is_tensor(v)}, host_inputs(one, fresh))
    # padding at the start of a row: the mask is kept and transformers builds and checks it (2 more reads)
    left = dict(batch)
    for key, fill in (("input_ids", processor.tokenizer.pad_token_id), ("attention_mask", 0), ("labels", -100)):
        rows = batch[key].clone()
        for i, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            rows[i] = torch.cat([torch.full((rows.shape[1] - n,), fill), batch[key][i, :n]])
        left[key] = rows
    fresh, _ = build_tiny_model(TINY_TEXTS, seed=0)
    use_batched_encoder_attention(fresh)
    left_host = host_inputs(left, fresh)
    assert "attention_mask" in left_host and "right_padded_mask" not in left_host
    _, reads = compare(fresh, {k: v for k, v in left.items() if torch.is_tensor(v)}, left_host)
    assert reads.total == 2, reads.where
    assert host_inputs(left, fresh, token_multiple=16)["input_ids"].shape == left["input_ids"].shape  # not padded
    for attn in ("eager", "loop"):  # the 2-D padding mask passed through; transformers' per-window attention
        fresh, _ = build_tiny_model(TINY_TEXTS, seed=0)
        if attn == "eager":
            fresh.set_attn_implementation("eager")
        compare(fresh, stock_inputs, host_inputs(batch, fresh))

    # the counts are checked on the host; a batch whose placeholders do not match its audio is refused
    bad = dict(batch, input_ids=batch["input_ids"].clone())
    bad["input_ids"][0, bad["input_ids"][0].tolist().index(processor.audio_token_id)] = processor.tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"has \d+ audio placeholder tokens but its audio gives \d+ encoder frames"):
        host_inputs(bad, model)
    # without the host inputs the model runs transformers' forward: generation is unchanged
    prompt = processor.apply_transcription_request([np.zeros(16000, np.float32)])
    with torch.no_grad():
        assert model.generate(**prompt, max_new_tokens=4, do_sample=False).shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.slow  # torch.compile (inductor) of the tiny model's layers: tens of seconds
def test_compiled_layers_reuse_their_graphs_for_new_lengths():
    """compile_layers: a second batch of other lengths (same kind: 3 clips, right-padded) runs the compiled
    graphs without compiling anything again, and dynamo's variant limit is raised (an H200 run exceeded the
    default 8 with bucketed batches). With the host layout each layer compiles whole: the batched encoder
    attention gets its window layout from host_inputs, so nothing breaks a layer's graph (the layout made inside
    the forward, a deliberate graph break, is the fallback: shown at the end)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from polyglot_lion.model.answer import answer_loss
    from polyglot_lion.model.efficiency import RECOMPILE_LIMIT, compile_layers
    from polyglot_lion.model.encoder_attention import use_batched_encoder_attention
    from polyglot_lion.model.host_layout import host_inputs, use_host_layout
    from polyglot_lion.model.prompts import PromptEncoder, collate

    rng = np.random.default_rng(5)
    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    enc = PromptEncoder(processor, "agnostic")

    def batch(seconds, texts):
        clips = [enc.encode(rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1, t, "en")
                 for s, t in zip(seconds, texts)]
        return host_inputs(collate(clips, processor.tokenizer.pad_token_id), model)

    use_batched_encoder_attention(model)
    use_host_layout(model)
    torch._dynamo.reset()
    counters.clear()
    assert compile_layers(model) == len(model.model.language_model.layers) + len(model.model.audio_tower.layers)
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT
    first = batch((1.2, 2.5, 3.1), ("a b", "hello there", "one two three"))
    second = batch((1.7, 3.4, 4.6), ("x", "the cat sat on", "a longer sentence here"))
    assert first["input_ids"].shape != second["input_ids"].shape
    answer_loss(model, first).backward()
    compiled = counters["frames"]["total"]
    assert compiled > 0  # the layers did compile
    loss = answer_loss(model, second)
    loss.backward()
    assert counters["frames"]["total"] == compiled, "a batch of new lengths compiled again"
    assert torch.isfinite(loss)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    without = batch((1.1, 2.2, 3.3), ("a", "b c", "d e f"))
    del without["audio_window_mask"]  # no layout given: the attention makes it, behind a graph break
    answer_loss(model, without).backward()
    assert sum(counters["graph_break"].values()) > 0
    torch._dynamo.reset()


def test_kept_grad_buffers_take_every_micro_batch_in_place():
    """keep_grad_buffers, what CUDA-graph layers (compile_layers(mode="reduce-overhead")) need: with a .grad buffer
    in place before the first backward, autograd adds each micro-batch's gradient into that same memory, across
    micro-batches and steps (zero_grad(set_to_none=False)), so no .grad is ever a graph's output memory. Without
    it the first backward installs a new tensor. A wrong mode is refused, naming the allowed ones."""
    from polyglot_lion.model.efficiency import COMPILE_MODES, compile_layers, keep_grad_buffers

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
    params = list(net.parameters())
    x = torch.randn(6, 4)
    net(x[:3]).sum().backward()  # no buffers: autograd installs the gradient tensors it made
    net(x[3:]).sum().backward()
    expected = [p.grad.clone() for p in params]  # the two micro-batches' sum
    net.zero_grad(set_to_none=True)

    assert keep_grad_buffers(params) == len(params) and keep_grad_buffers(params) == 0
    buffers = [p.grad for p in params]
    pointers = [g.data_ptr() for g in buffers]
    for _ in range(2):  # two steps of two micro-batches
        for half in (x[:3], x[3:]):
            net(half).sum().backward()
        assert all(p.grad is g and p.grad.data_ptr() == ptr for p, g, ptr in zip(params, buffers, pointers))
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.grad, e)
        net.zero_grad(set_to_none=False)
        assert all(float(p.grad.abs().sum()) == 0 for p in params)
    with pytest.raises(ValueError, match="mode 'fast' is not one of default, reduce-overhead"):
        compile_layers(net, mode="fast")
    assert COMPILE_MODES[0] == "default"


@pytest.mark.slow  # trains two copies of the tiny model and round-trips a checkpoint: tens of seconds
def test_channels_last_conv_trains_and_saves_the_same(tmp_path):
    """model.channels_last_conv: the front-end's convolutions in channels-last layout give the same loss and
    gradients (to fp32 rounding), and the checkpoint saves and loads with the same weights."""
    from transformers import Qwen3ASRForConditionalGeneration

    from polyglot_lion.model.answer import answer_loss
    from polyglot_lion.model.efficiency import use_channels_last_conv

    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    inputs = _mixed_batch(processor, np.random.default_rng(1))
    ref_loss, ref_grads = _loss_and_grads(model, lambda: answer_loss(model, inputs))
    assert use_channels_last_conv(model) == 3
    conv = model.model.audio_tower.conv2d2.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    cl_loss, cl_grads = _loss_and_grads(model, lambda: answer_loss(model, inputs))
    assert cl_loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref_grads.items():
        torch.testing.assert_close(cl_grads[name], g, rtol=1e-3, atol=1e-5, msg=name)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = Qwen3ASRForConditionalGeneration.from_pretrained(tmp_path / "ckpt", dtype=torch.float32)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_master_weight_adamw_steps_fp32_copies_of_bf16_weights():
    """bf16 weights with fp32 master copies (``gpu_train.py --weights bf16``): the masters follow torch's AdamW on
    fp32 weights given the same (bf16-rounded) gradients, and the bf16 weights are the masters rounded; a weight
    without a gradient is left alone; the state round-trips."""
    from polyglot_lion.model.efficiency import MasterWeightAdamW

    torch.manual_seed(0)
    ref = torch.nn.Linear(16, 8)
    low = torch.nn.Linear(16, 8)
    low.load_state_dict(ref.state_dict())
    frozen = torch.nn.Parameter(torch.ones(3))
    kw = dict(lr=1e-2, betas=(0.9, 0.98), weight_decay=0.01)
    opt_ref = torch.optim.AdamW(ref.parameters(), **kw)
    opt = MasterWeightAdamW([*low.parameters(), frozen], **kw)  # while fp32: the masters are the exact weights
    low.to(torch.bfloat16)  # then the cast (same parameter objects)
    frozen.data = frozen.data.bfloat16()
    assert all(p.dtype == torch.bfloat16 for p in opt.params)
    assert torch.equal(opt.masters[0], ref.weight.detach())
    for step in range(5):
        x = torch.randn(4, 16)
        low(x.bfloat16()).float().pow(2).mean().backward()
        for p, q in zip(ref.parameters(), low.parameters()):
            p.grad = q.grad.float()  # the same gradients, as the bf16 model computed them
        opt_ref.step()
        opt.step()
        opt_ref.zero_grad()
        opt.zero_grad()
        for p, m, q in zip(ref.parameters(), opt.masters, low.parameters()):
            torch.testing.assert_close(m, p.detach(), rtol=1e-6, atol=1e-7)
            assert torch.equal(q.detach(), m.to(torch.bfloat16))
            assert q.dtype == torch.bfloat16 and m.dtype == torch.float32
    assert torch.equal(frozen.detach(), torch.ones(3, dtype=torch.bfloat16))
    assert not torch.equal(opt.masters[0], opt.masters[0].to(torch.bfloat16).float())  # finer than bf16
    state = opt.state_dict()
    fresh_weights = [torch.nn.Parameter(torch.zeros_like(p)) for p in opt.params]
    other = MasterWeightAdamW(fresh_weights, **kw)
    other.load_state_dict(state)
    for a, b in zip(other.masters, opt.masters):
        assert torch.equal(a, b)
    assert torch.equal(fresh_weights[0].detach(), opt.params[0].detach())
    with pytest.raises(ValueError, match="no parameters"):
        MasterWeightAdamW([])
