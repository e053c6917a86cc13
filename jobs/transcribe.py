"""Ray job: bulk-transcribe folders, archives, manifests or a store split (the same as ``polyglot-lion transcribe``).

    ray job submit --address http://127.0.0.1:8265 --runtime-env cluster/runtime_env.yaml -- \
        python jobs/transcribe.py --model models:/polyglot-lion-tiny@champion --input /shared/inbox \
        --out /shared/transcripts/inbox --tracking-uri sqlite:////shared/mlflow.db

Tiny CPU run: add ``--limit 8``. Inside a Ray job RAY_ADDRESS is set, so the transcriber actors run on the cluster
(one per GPU by default). Inputs and OUT must be absolute paths every node can read, or bucket locations
(``--input s3://bucket/inbox --out s3://bucket/transcripts/inbox``); re-submitting with the same OUT finishes what
is missing.
"""

import sys

from _bootstrap import ensure_importable

ensure_importable()

from polyglot_lion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["transcribe", *sys.argv[1:]]))
