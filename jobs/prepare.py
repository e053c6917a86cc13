"""Ray job: import corpora into the store (the same as ``polyglot-lion prepare``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/prepare.py --specs corpus/corpus.json --store /shared/store
    ray job submit ... -- python jobs/prepare.py --specs jobs/configs/corpora/paper.yaml \
        --root /shared/downloads --store /shared/store          # the paper's twelve corpora, one job

Inside a Ray job RAY_ADDRESS is set, so the import runs on the cluster the job was submitted to. The inputs must
be on storage every node can read; the store may be a bucket (``--store s3://bucket/store``, the endpoint and keys
from the AWS environment), checked before Ray starts.
"""

import sys

from _bootstrap import ensure_importable

ensure_importable()

from polyglot_lion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
