"""Ray job: WER/CER of a model on the store's test sets (the same as ``polyglot-lion evaluate``).

    ray job submit --address http://127.0.0.1:8265 --runtime-env cluster/runtime_env.yaml -- \
        python jobs/evaluate.py --model models:/polyglot-lion-tiny@champion --store /shared/store \
        --out /shared/eval/tiny-champion --tracking-uri sqlite:////shared/mlflow.db

Tiny CPU run: add ``--max-utterances 4``. The job's working directory is a copy of the project, so give the store,
the output folder and a SQLite tracking URI as absolute paths on storage every node can read (``make
submit-evaluate`` does), or the store and the output folder as bucket locations (``s3://bucket/store``). Results go
to OUT/results.{json,md,png} and to MLflow, tagged on the model version.
"""

import sys

from _bootstrap import ensure_importable

ensure_importable()

from polyglot_lion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
