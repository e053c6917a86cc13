"""The main job on embedded defaults: ``make demo``.

    python -m polyglot_lion.demo --out demo_out

Makes a synthetic four-language corpus shaped like the paper's (espeak-ng; no download), imports it into a
store with Ray Data, balances the training split with the paper's two-stage upsampling, and prints what
happened at each step. Later stages (train, evaluate, serve) join this script as they are built.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _step(n: int, title: str) -> float:
    print(f"\n=== {n}. {title} ===", flush=True)
    return time.time()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m polyglot_lion.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--train-utterances", type=int, default=600, help="synthetic train utterances (default 600)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import ray

    from .data.balance import corpus_from_table, make_plan, plot_balance, write_plan
    from .data.prepare import ImportSpec, PrepareOptions, format_summary, prepare
    from .data.stats import format_stats, store_stats
    from .data.store import read_metadata
    from .data.synth import corpus_hours, synthesize_corpus
    from .runtime import init_ray

    out = Path(args.out)
    corpus_dir, store, plan_dir = out / "corpus", out / "store", out / "plans" / "two-stage"
    t0 = time.time()

    t = _step(1, "synthesise a skewed four-language corpus (espeak-ng)")
    specs = synthesize_corpus(str(corpus_dir), args.train_utterances, 6, args.seed)
    print(f"{len(specs)} manifests (12 datasets x train/dev/test), {corpus_hours(specs):.2f} h of 22.05 kHz WAV "
          f"in {corpus_dir} ({time.time() - t:.0f} s). Sizes follow the paper's Table 1: English and Mandarin "
          f"plentiful, Malay scarce.")

    t = _step(2, "import into the store with Ray Data (decode, resample to 16 kHz, FLAC, normalise text)")
    started = init_ray(quiet=True)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = True
        metas = prepare([ImportSpec.from_dict(s) for s in specs], str(store), PrepareOptions())
    finally:
        if started:
            ray.shutdown()
    print(format_summary(metas))
    print(f"-> Parquet shards in {store}/data/<split>/<language>/<dataset>/ ({time.time() - t:.0f} s)")

    t = _step(3, "what the store holds (polyglot-lion stats)")
    print(format_stats(store_stats(str(store), "train")))

    t = _step(4, "balance the training split: the paper's two-stage upsampling")
    meta = read_metadata(str(store), "train", columns=["id", "language", "dataset", "duration_s"])
    corpus, durations = corpus_from_table(meta)
    natural = sum(len(v) for v in corpus.values())
    plan = make_plan(corpus, "two-stage", args.seed)
    summary = write_plan(plan, durations, meta, str(plan_dir), extra={"store": str(store), "split": "train"})
    png = plot_balance(str(plan_dir / "summary.json"), str(out / "balance.png"))
    print(f"{'language':<9}{'natural':>9}{'after stage 1':>15}{'after stage 2':>15}{'share':>8}")
    for lang, v in summary["languages"].items():
        nat = sum(len(ids) for (lang2, _), ids in corpus.items() if lang2 == lang)
        print(f"{lang:<9}{nat:>9}{v['stage1']:>15}{v['utterances']:>15}{100 * v['utterances'] / summary['total']:>7.1f}%")
    print(f"{natural} utterances -> {summary['total']} references (no audio copied): every language exactly 25%.")
    print(f"plan: {plan_dir}/plan.parquet   chart: {png}")

    print(f"\nDone in {time.time() - t0:.0f} s. Next: look at {png}; run 'polyglot-lion stats --store {store}' "
          f"or 'polyglot-lion balance --store {store} --strategy temperature --out {out}/plans/t3' to compare.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
