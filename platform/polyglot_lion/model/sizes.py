"""The real Qwen3-ASR sizes (0.6B and 1.7B) as in-process configs, for benchmarks that need the true shapes.

No checkpoint can be downloaded here, so the GPU benchmarks build the published architectures randomly
initialised. The numbers are those of ``Qwen/Qwen3-ASR-0.6B-hf`` / ``-1.7B-hf`` (third-party ports agree):

    0.6B: encoder d_model 896, 18 layers, 14 heads, FFN 3584; LLM 1024 hidden, MLP 3072, 28 layers   ~0.78B
    1.7B: encoder d_model 1024, 24 layers, 16 heads, FFN 4096; LLM 2048 hidden, MLP 6144, 28 layers  ~2.0B

Both: 16 query / 8 key-value heads of 128, vocabulary 151,936, tied embeddings, 128 mel bins, conv front-end
of 480 channels, encoder chunks of 100 mel frames and attention windows of 800 frames (8 s).
"""

from __future__ import annotations

_COMMON_ENCODER = {"num_mel_bins": 128, "downsample_hidden_size": 480, "n_window": 50, "n_window_infer": 800}
_COMMON_DECODER = {"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                   "vocab_size": 151_936, "max_position_embeddings": 65_536, "tie_word_embeddings": True,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0}}

QWEN3_ASR_SIZES = {
    "0.6b": (dict(_COMMON_ENCODER, d_model=896, encoder_layers=18, encoder_attention_heads=14, encoder_ffn_dim=3584),
             dict(_COMMON_DECODER, hidden_size=1024, intermediate_size=3072)),
    "1.7b": (dict(_COMMON_ENCODER, d_model=1024, encoder_layers=24, encoder_attention_heads=16,
                  encoder_ffn_dim=4096),
             dict(_COMMON_DECODER, hidden_size=2048, intermediate_size=6144)),
}


def qwen3_asr_config(size: str, tokenizer=None):
    """``Qwen3ASRConfig`` of the real ``size`` ('0.6b' or '1.7b').

    With ``tokenizer`` (e.g. the tiny in-process one), the special-token ids are that tokenizer's, so its prompts
    drive the model; the vocabulary stays the real 151,936 rows, so compute and memory are the real ones.
    """
    from transformers import Qwen3ASRConfig

    if size not in QWEN3_ASR_SIZES:
        raise ValueError(f"size must be one of {sorted(QWEN3_ASR_SIZES)} (is {size!r})")
    enc, dec = (dict(d) for d in QWEN3_ASR_SIZES[size])
    enc["output_dim"] = dec["hidden_size"]
    ids = {}
    if tokenizer is not None:
        tid = tokenizer.convert_tokens_to_ids
        ids = {"audio_token_id": tid("<|audio_pad|>"), "pad_token_id": tid("<|endoftext|>"),
               "eos_token_id": [tid("<|im_end|>"), tid("<|endoftext|>")]}
    return Qwen3ASRConfig(audio_config=dict(enc, model_type="qwen3_asr_encoder"),
                          text_config=dict(dec, model_type="qwen3"), tie_word_embeddings=True, **ids)


def qwen3_asr_0_6b_config(tokenizer=None):
    return qwen3_asr_config("0.6b", tokenizer)


def qwen3_asr_1_7b_config(tokenizer=None):
    return qwen3_asr_config("1.7b", tokenizer)
