"""Loading Qwen3-ASR checkpoints in transformers format, and refusing the original layout.

The original ``Qwen/Qwen3-ASR-*`` checkpoints (and Polyglot-Lion's releases, trained with the ``qwen-asr``
package) store ``thinker.*`` weights under a ``thinker_config``. transformers 5 loads such a folder WITHOUT
error as randomly initialised weights, so every load here checks the layout first and refuses it, naming
the command that converts it (``polyglot-lion convert SRC DST``). Every load also checks that no weight was
left missing, which is the other way a model silently ends up random.
"""

from __future__ import annotations

import json
import math
import os
import types
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


class CheckpointFormatError(ValueError):
    """A checkpoint that would load as random weights (original layout, missing weights)."""


def _weight_names(folder: Path) -> list[str]:
    if (folder / "model.safetensors.index.json").exists():
        return list(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"])
    if (folder / "model.safetensors").exists():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            return list(f.keys())
    return []


def parameter_count(path: str | os.PathLike) -> int:
    """How many parameters a local transformers-format folder's safetensors weights hold (read from the headers)."""
    from safetensors import safe_open  # only where weights are read

    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    total = 0
    for name in files:
        with safe_open(str(folder / name), "pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def checkpoint_format(path: str | os.PathLike) -> str:
    """'transformers' or 'original' for a local checkpoint folder; raises if it is not a checkpoint."""
    folder = Path(path)
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no config.json (is this a model folder?)")
    cfg = json.loads(cfg_path.read_text())
    if "thinker_config" in cfg or any(n.startswith("thinker.") for n in _weight_names(folder)):
        return "original"
    return "transformers"


def _refuse_original(source: str) -> None:
    raise CheckpointFormatError(
        f"{source} is an original-format Qwen3-ASR checkpoint (thinker.* weights / thinker_config): "
        f"transformers would load it without error as RANDOM weights. Convert it first: "
        f"'polyglot-lion convert {source} CONVERTED_DIR', then load CONVERTED_DIR "
        f"(or use a transformers-format checkpoint such as Qwen/Qwen3-ASR-0.6B-hf)."
    )


def load_model(source: str, dtype=None, device: str | None = None, local_files_only: bool | None = None):
    """(model, processor) from a local transformers-format folder or a hub id (needs network or a cache)."""
    import torch
    from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

    local = os.path.isdir(source)
    if local:
        if checkpoint_format(source) == "original":
            _refuse_original(source)
    else:
        try:
            from huggingface_hub import hf_hub_download

            cfg = json.loads(Path(hf_hub_download(source, "config.json",
                                                  local_files_only=bool(local_files_only))).read_text())
        except Exception as e:
            raise FileNotFoundError(
                f"model {source!r} is not a local folder and could not be fetched from the Hugging Face hub "
                f"({type(e).__name__}). Hub ids only work with network access or a populated cache "
                f"(HF_HOME); on an offline machine download the checkpoint elsewhere and pass its folder."
            ) from None
        if "thinker_config" in cfg:
            _refuse_original(source)
    model, info = Qwen3ASRForConditionalGeneration.from_pretrained(
        source, dtype=dtype or torch.float32, output_loading_info=True,
        local_files_only=local or bool(local_files_only))
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("lm_head.")]
    if missing:
        raise CheckpointFormatError(f"{source}: {len(missing)} weights missing from the checkpoint (they would be "
                                    f"random), e.g. {sorted(missing)[:5]}")
    processor = AutoProcessor.from_pretrained(source, local_files_only=local or bool(local_files_only))
    if device:
        model.to(device)
    return model, processor


def load_tokenizer_and_features(folder: str | os.PathLike):
    """The tokenizer and the feature extractor of a local checkpoint folder, without its processor, or None when
    the folder does not name their classes. The classes named in ``tokenizer_config.json`` and
    ``processor_config.json`` (or ``preprocessor_config.json``) come from transformers' lazy top level, which
    imports just their modules; ``AutoProcessor`` also imports transformers' processor module and, through it,
    the modeling code, seconds of CPU in every featurising worker process. Returns an object with ``tokenizer``
    and ``feature_extractor``: what ``PromptEncoder`` takes beside the prompt's ``PromptPieces``."""
    import transformers  # heavy; its top level is lazy, so only the two classes' modules load

    root = Path(folder)

    def config(name: str) -> dict:
        return json.loads((root / name).read_text()) if (root / name).is_file() else {}

    tokenizer_class = config("tokenizer_config.json").get("tokenizer_class")
    extractor_class = (config("processor_config.json").get("feature_extractor", {}).get("feature_extractor_type")
                       or config("preprocessor_config.json").get("feature_extractor_type"))
    if not (tokenizer_class and extractor_class and hasattr(transformers, tokenizer_class)
            and hasattr(transformers, extractor_class)):
        return None
    return types.SimpleNamespace(tokenizer=getattr(transformers, tokenizer_class).from_pretrained(str(root)),
                                 feature_extractor=getattr(transformers, extractor_class).from_pretrained(str(root)))
