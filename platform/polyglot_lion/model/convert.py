"""Convert an original-layout Qwen3-ASR checkpoint (``thinker.*``) to transformers format.

    polyglot-lion convert ~/ckpt/Polyglot-Lion-0.6B ~/ckpt/Polyglot-Lion-0.6B-hf

Weights are renamed, never changed (the converted model's tensors equal the originals); config values come
from ``thinker_config``; tokenizer and processor files are copied as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .loading import WEIGHT_FILES, CheckpointFormatError, checkpoint_format

# order matters: the specific prefixes before the general ``thinker.``
RENAMES: list[tuple[str, str]] = [
    ("thinker.model.", "model.language_model."),
    ("thinker.lm_head.", "lm_head."),
    ("thinker.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
    ("thinker.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
    ("thinker.", "model."),
]


def rename_weight(name: str) -> str:
    for old, new in RENAMES:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def convert_config(original: dict) -> dict:
    thinker = original["thinker_config"]
    out = {"model_type": "qwen3_asr", "architectures": ["Qwen3ASRForConditionalGeneration"]}
    for key in ("audio_config", "text_config"):
        out[key] = dict(thinker[key])
    out["audio_config"]["model_type"] = "qwen3_asr_encoder"
    out["text_config"]["model_type"] = "qwen3"
    for key in ("audio_token_id", "pad_token_id", "eos_token_id", "tie_word_embeddings", "initializer_range"):
        for src in (thinker, original):
            if key in src:
                out[key] = src[key]
                break
    if "audio_token_id" not in out and "audio_token_index" in thinker:
        out["audio_token_id"] = thinker["audio_token_index"]
    return out


def convert_checkpoint(src: str, dst: str) -> dict:
    """Write a transformers-format copy of ``src`` to ``dst``; returns {"weights": N, "renamed": N}."""
    from safetensors.torch import load_file, save_file

    src_p, dst_p = Path(src), Path(dst)
    fmt = checkpoint_format(src)
    if fmt != "original":
        raise CheckpointFormatError(f"{src} is already in transformers format: nothing to convert")
    if dst_p.exists() and any(dst_p.iterdir()):
        raise FileExistsError(f"destination {dst} exists and is not empty")
    dst_p.mkdir(parents=True, exist_ok=True)
    config = convert_config(json.loads((src_p / "config.json").read_text()))
    files = sorted(src_p.glob("*.safetensors"))
    if not files:
        raise CheckpointFormatError(f"{src}: no *.safetensors weights found (only safetensors is supported)")
    n = renamed = 0
    weight_map = {}
    for f in files:
        tensors = load_file(str(f))
        out = {}
        for name, t in tensors.items():
            new = rename_weight(name)
            renamed += new != name
            out[new] = t.contiguous()
            weight_map[new] = f.name
        n += len(out)
        save_file(out, str(dst_p / f.name), metadata={"format": "pt"})
    if len(files) > 1:
        (dst_p / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (dst_p / "config.json").write_text(json.dumps(config, indent=2))
    for f in src_p.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in WEIGHT_FILES + ("config.json",):
            shutil.copy2(f, dst_p / f.name)
    return {"weights": n, "renamed": renamed}
