"""Build the demo's base model: a small Qwen3-ASR (the ``demo`` preset) trained on the demo's corpus without balancing.

    python jobs/experiments/build_demo_base.py --out runs/demo-base              # the shipped base's settings
    python jobs/experiments/build_demo_base.py --out runs/demo-base --install    # and replace the shipped one
    python jobs/experiments/build_demo_base.py --out runs/base-en-zh --languages en,zh --preset tiny  # reproduce-mini's

This is reproduce-mini's base stage (``polyglot_lion.experiment``, ``base_only``), by default on all four languages
with natural sampling, so Malay, the scarcest, is its weakest. `make demo` fine-tunes it with the paper's two-stage
balancing, as the paper fine-tunes a pretrained Qwen3-ASR. Training a base from scratch is most of the learning
and would not fit the demo's ten minutes, so the base is built once with this script and shipped in the package
(``polyglot_lion/assets/demo-base``, bf16 weights) with its provenance (``PROVENANCE.json``: the command, the
commit, the corpus, the steps, the base's scores, a checksum that the demo checks). The corpus is the demo's own
(``make demo``'s defaults: 4,800 train utterances, seed 0), so the tokenizer, trained on its training texts, is
the one the demo would build. A base of English and Mandarin only (``--languages en,zh``: Qwen3-ASR's situation
in the ablation) learns Tamil and Malay too slowly for the demo's minutes (docs/results).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _bootstrap import ensure_importable  # noqa: E402

ensure_importable()


def main(argv=None) -> int:
    from polyglot_lion.demo_base import SHIPPED, export_base
    from polyglot_lion.experiment import AblationOptions, capped_language_means, run_ablation

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (corpus, store, the base's run, results)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps of the base (default 3000)")
    p.add_argument("--train-utterances", type=int, default=4800, help="synthetic train utterances (the demo's)")
    p.add_argument("--languages", default="en,zh,ta,ms", help="what the base learns, natural sampling "
                                                               "(default all four: Malay scarce, as in the corpus)")
    p.add_argument("--preset", default="demo", choices=("tiny", "demo"),
                   help="model size (default demo: its bf16 weights stay under 2 MiB in git)")
    p.add_argument("--install", action="store_true", help=f"replace the shipped base ({SHIPPED})")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and steps: checks that every stage runs")
    args = p.parse_args(argv)
    languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    opts = AblationOptions(out=args.out, base_steps=None if args.smoke else args.steps, ft_steps=0, base_only=True,
                           seeds=(0,), preset=args.preset, base_languages=languages,
                           train_utterances=args.train_utterances, eval_utterances=8, smoke=args.smoke)
    result = run_ablation(opts)
    base = result["runs"][0]
    dest = SHIPPED if args.install else os.path.join(args.out, "demo-base")
    export_base(base["checkpoint"], dest, command=" ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
                languages=languages, preset=args.preset, steps=opts.base_steps,
                train_utterances=opts.train_utterances, scores=capped_language_means(base), timings=result["timings"])
    print(f"base: {base['eval']['languages']} -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
