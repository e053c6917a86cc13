"""A tiny, randomly initialised Qwen3-ASR with a tokenizer trained in-process: for tests, demo and benchmarks.

No weights or tokenizers can be downloaded here, so the tiny model has the real architecture
(``Qwen3ASRForConditionalGeneration``) with shrunk sizes, and a byte-level BPE trained on the store's
transcripts carrying the real special tokens and a chat template that renders the Qwen3-ASR prompt:

    <|im_start|>system\\n{context}<|im_end|>\\n<|im_start|>user\\n<|audio_start|><|audio_pad|>...<|audio_end|><|im_end|>\\n<|im_start|>assistant\\n

Training a model from scratch needs the audio front-end heard: with transformers' stock initialisation the
conv front-end's output is ~1e-4 against ~0.5 for the position embedding and the model never listens, so
the builder re-initialises the convolutions and the projector Kaiming-normal (``init_audio_frontend``).
"""

from __future__ import annotations

import torch

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
                  "<|audio_pad|>", "<asr_text>"]

# Renders the Qwen3-ASR conversation; an audio item becomes <|audio_start|><|audio_pad|><|audio_end|>, which the
# processor expands to one <|audio_pad|> per audio frame the encoder produces.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}{{ '<|im_start|>system\\n<|im_end|>\\n' }}{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}{{ '<|audio_start|><|audio_pad|><|audio_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if not (loop.last and message['role'] == 'assistant') -%}{{ '<|im_end|>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

TINY_ENCODER = dict(encoder_layers=3, d_model=160, encoder_attention_heads=4, encoder_ffn_dim=640,
                    downsample_hidden_size=32, num_mel_bins=128)
TINY_DECODER = dict(num_hidden_layers=3, hidden_size=192, intermediate_size=576, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=48, max_position_embeddings=4096)


# Presets for from-scratch models: "tiny" trains in minutes on 2 CPU cores; "demo" is the shipped demo base's size,
# two layers a side and narrower, so its bf16 weights stay under 2 MiB in git; "small" (~25M parameters) is for a
# GPU run of the same experiment.
PRESETS: dict[str, tuple[dict, dict]] = {
    "tiny": (TINY_ENCODER, TINY_DECODER),
    "demo": (dict(TINY_ENCODER, encoder_layers=2, d_model=128, encoder_ffn_dim=384),
             dict(TINY_DECODER, num_hidden_layers=2, hidden_size=128, intermediate_size=320, head_dim=32)),
    "small": (dict(TINY_ENCODER, encoder_layers=6, d_model=384, encoder_attention_heads=6, encoder_ffn_dim=1536,
                   downsample_hidden_size=64),
              dict(TINY_DECODER, num_hidden_layers=6, hidden_size=512, intermediate_size=1536,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=64)),
}


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 1000):
    """A byte-level BPE trained on ``texts`` with Qwen3-ASR's special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    fixed = ["language None", "language English", "language Chinese", "language Tamil", "language Malay",
             "system", "user", "assistant"]
    tok.train_from_iterator(list(texts) + fixed * 50, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>",
                              "audio_eos_token": "<|audio_end|>"},
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_processor(texts: list[str], vocab_size: int = 1000):
    from transformers import Qwen3ASRFeatureExtractor, Qwen3ASRProcessor

    tokenizer = build_tiny_tokenizer(texts, vocab_size)
    return Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=tokenizer,
                             chat_template=CHAT_TEMPLATE)


def tiny_config(tokenizer, encoder: dict | None = None, decoder: dict | None = None):
    from transformers import Qwen3ASRConfig

    enc = dict(TINY_ENCODER, **(encoder or {}))
    dec = dict(TINY_DECODER, **(decoder or {}))
    enc["output_dim"] = dec["hidden_size"]
    dec["vocab_size"] = len(tokenizer)
    dec["tie_word_embeddings"] = True
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3ASRConfig(
        audio_config=dict(enc, model_type="qwen3_asr_encoder"), text_config=dict(dec, model_type="qwen3"),
        audio_token_id=ids("<|audio_pad|>"), pad_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")], tie_word_embeddings=True,
    )


@torch.no_grad()
def init_audio_frontend(model) -> None:
    """Kaiming-normal init of the conv front-end and the projector, so a from-scratch encoder is heard."""
    tower = model.model.audio_tower
    for layer in (tower.conv2d1, tower.conv2d2, tower.conv2d3, tower.conv_out,
                  model.model.multi_modal_projector.linear_1, model.model.multi_modal_projector.linear_2):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()


def build_tiny_model(texts: list[str], seed: int = 0, vocab_size: int = 1000, encoder: dict | None = None,
                     decoder: dict | None = None):
    """(model, processor): the real Qwen3-ASR architecture, tiny and random, with a tokenizer for ``texts``."""
    from transformers import Qwen3ASRForConditionalGeneration

    processor = build_tiny_processor(texts, vocab_size)
    torch.manual_seed(seed)
    model = Qwen3ASRForConditionalGeneration(tiny_config(processor.tokenizer, encoder, decoder))
    init_audio_frontend(model)
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    return model, processor


@torch.no_grad()
def vary_decoder(model, std: float = 0.2, seed: int = 1) -> None:
    """Redraw the decoder's matrices (embeddings included) with a wider normal: a random decoder with the stock
    initialisation greedily repeats one token whatever it is given; with ``std`` around 0.2 its output changes
    token by token with the context, and around 0.05 it falls into loops of one or a few tokens. Decoding
    tests need both to compare engines token for token."""
    gen = torch.Generator().manual_seed(seed)
    for param in model.model.language_model.parameters():
        if param.dim() == 2:
            param.copy_(torch.randn(param.shape, generator=gen) * std)


def save_tiny_checkpoint(out_dir: str, texts: list[str], seed: int = 0, **kwargs) -> str:
    """Build the tiny model and save it in transformers format (model + processor files)."""
    model, processor = build_tiny_model(texts, seed, **kwargs)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
