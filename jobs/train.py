"""Ray job: fine-tune Qwen3-ASR (the same as ``polyglot-lion train``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --config jobs/configs/qwen3_asr/tiny_cpu.yaml data.store=/shared/store \
        data.plan=/shared/plans/two-stage run.name=tiny-1
"""

import sys

from _bootstrap import ensure_importable

ensure_importable()

from polyglot_lion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
