"""Ray job: compute a balanced training plan (the same as ``polyglot-lion balance``).

    ray job submit --working-dir . -- python jobs/balance.py --store /shared/store --strategy two-stage \
        --seed 0 --out /shared/plans/two-stage --plot /shared/plans/two-stage.png
    ... -- python jobs/balance.py --store s3://bucket/store --out s3://bucket/plans/two-stage   # in a bucket
"""

import sys

from _bootstrap import ensure_importable

ensure_importable()

from polyglot_lion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["balance", *sys.argv[1:]]))
