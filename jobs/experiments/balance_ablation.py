"""Ray job / script: the paper's two claims in miniature (balanced vs natural sampling; agnostic vs tagged).

    python jobs/experiments/balance_ablation.py --out runs/ablation --budget 70m        # CPU, ~70 minutes
    python jobs/experiments/balance_ablation.py --out runs/ablation-gpu --preset small --budget 4000,1500
    python jobs/experiments/balance_ablation.py --out /tmp/abl --smoke                  # seconds per stage
    ray job submit --address http://127.0.0.1:8265 --runtime-env cluster/runtime_env.yaml -- \
        python jobs/experiments/balance_ablation.py --out /shared/ablation --budget 70m

Writes OUT/results.json, OUT/results.md and OUT/results.png; every run is in the MLflow experiment
'balance-ablation' (OUT/mlflow.db unless --tracking-uri).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def parse_budget(text: str) -> dict:
    """'75m' -> minutes; 'BASE,FT' -> steps for the base model and each fine-tune; 'N' -> N steps each."""
    t = text.strip().lower()
    try:
        if t.endswith("m"):
            return {"budget_minutes": float(t[:-1])}
        if "," in t:
            base, ft = (int(x) for x in t.split(","))
            return {"base_steps": base, "ft_steps": ft}
        return {"base_steps": int(t), "ft_steps": int(t)}
    except ValueError:
        raise SystemExit(f"--budget {text!r}: use minutes like 75m, or steps like 1500,300 (base,fine-tune)")


def main(argv=None) -> int:
    from polyglot_lion.experiment import AblationOptions, run_ablation

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (corpus, store, runs, results)")
    p.add_argument("--budget", default="70m", help="70m (minutes, calibrated on this machine) or BASE,FT steps")
    p.add_argument("--ft-lr", type=float, default=1e-3, help="peak learning rate of the fine-tunes (default 1e-3)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small"), help="model size (small: for a GPU)")
    p.add_argument("--seeds", default="0,1", help="seeds of the natural vs two-stage comparison (default 0,1)")
    p.add_argument("--train-utterances", type=int, default=4800, help="synthetic train utterances (default 4800)")
    p.add_argument("--eval-utterances", type=int, default=20, help="test utterances per dataset (default 20)")
    p.add_argument("--torch-threads", type=int, default=2, help="torch threads of the training worker")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///OUT/mlflow.db)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and steps: checks that every stage runs")
    args = p.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    opts = AblationOptions(out=args.out, seeds=seeds, preset=args.preset, train_utterances=args.train_utterances,
                           eval_utterances=args.eval_utterances, smoke=args.smoke, tracking_uri=args.tracking_uri,
                           torch_threads=args.torch_threads, ft_lr=args.ft_lr,
                           **parse_budget(args.budget))
    result = run_ablation(opts)
    print(open(os.path.join(args.out, "results.md"), encoding="utf-8").read())
    print(f"results: {args.out}/results.json, results.md, results.png; MLflow: {result['tracking_uri']} "
          f"(experiment balance-ablation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
