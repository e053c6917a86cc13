"""The demo's shipped base model: where it lies, how it is exported, how it is checked before use.

Built by ``jobs/experiments/build_demo_base.py`` (reproduce-mini's base stage: a from-scratch Qwen3-ASR of the
``demo`` preset trained on the demo's synthetic corpus with natural sampling). Its weights are stored in bf16, and
the preset is sized so that they stay under 2 MiB in git; training and CPU inference load them as fp32.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from .model.loading import parameter_count

#: the shipped base, inside the package
SHIPPED = str(Path(__file__).parent / "assets" / "demo-base")
PROVENANCE = "PROVENANCE.json"
WEIGHTS = "model.safetensors"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=os.path.dirname(__file__)).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export_base(checkpoint: str, dest: str, command: str, languages: tuple[str, ...], preset: str, steps: int,
                train_utterances: int, scores: dict, timings: dict) -> str:
    """Write ``checkpoint`` (a transformers-format folder) to ``dest`` with bf16 weights, its processor and
    PROVENANCE.json (what built it, the base's scores per language, the weights' checksum)."""
    import torch  # heavy: only the build script exports
    from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

    os.makedirs(dest, exist_ok=True)
    model = Qwen3ASRForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(dest)
    parameters = parameter_count(dest)
    AutoProcessor.from_pretrained(checkpoint).save_pretrained(dest)
    provenance = {
        "what": f"Qwen3-ASR of the {preset!r} preset ({parameters:,} parameters; built in-process, random init) "
                f"trained on the {'/'.join(languages)} training sets of the demo's synthetic espeak-ng corpus, natural "
                "sampling (each utterance as often as the next)",
        "languages": list(languages),
        "built_by": command, "commit": _git_commit(), "built_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "corpus": {"generator": "polyglot_lion.data.synth.synthesize_corpus", "train_utterances": train_utterances,
                   "seed": 0},
        "train": {"steps": steps, "config": "jobs/configs/qwen3_asr/tiny_cpu.yaml", "model.tiny_preset": preset,
                  "lr": 1e-3},
        "parameters": parameters,
        "test_capped_error_rate_by_language": scores, "timings_s": timings,
        "weights_dtype": "bfloat16", "sha256": {WEIGHTS: _sha256(os.path.join(dest, WEIGHTS))},
    }
    Path(dest, PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return dest


def shipped_base(path: str = SHIPPED) -> str:
    """``path`` after checking it is a complete base whose weights match PROVENANCE.json; a clear error if not."""
    prov = Path(path, PROVENANCE)
    if not prov.is_file():
        raise FileNotFoundError(f"demo base model: no {PROVENANCE} in {path}; build it with "
                                "`python jobs/experiments/build_demo_base.py --out runs/demo-base --install`")
    want = json.loads(prov.read_text())["sha256"][WEIGHTS]
    got = _sha256(os.path.join(path, WEIGHTS))
    if got != want:
        raise ValueError(f"demo base model: {path}/{WEIGHTS} has sha256 {got[:12]}..., PROVENANCE.json says "
                         f"{want[:12]}...; rebuild it (jobs/experiments/build_demo_base.py --install) or restore it "
                         "from git")
    return path
