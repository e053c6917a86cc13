"""The ``polyglot-lion`` command: one subcommand per stage, each a thin wrapper over the library.

    polyglot-lion synth    --out corpus/                       # synthetic four-language corpus (espeak-ng)
    polyglot-lion prepare  --specs corpus/corpus.json --store store/
    polyglot-lion prepare  --recipe nsc --input downloads/nsc --store store/   # a corpus as published
    polyglot-lion recipes                                      # the twelve corpora's recipes
    polyglot-lion balance  --store store/ --strategy two-stage --seed 0 --out plans/two-stage --plot mix.png
    polyglot-lion stats    --store store/
    polyglot-lion convert  ORIGINAL_CKPT CONVERTED_CKPT         # thinker.* layout -> transformers format
    polyglot-lion transcribe --model models:/polyglot-lion-tiny@champion --input calls/ --out transcripts/
    polyglot-lion evaluate --model models:/polyglot-lion-tiny@champion --store store/ --out eval_out/
    polyglot-lion serve    --model models:/polyglot-lion-tiny@champion --port 8000
    polyglot-lion models   list | show NAME | promote NAME VERSION --alias champion
    polyglot-lion runs     compare [--experiment polyglot-lion]
    polyglot-lion train    --config jobs/configs/qwen3_asr/tiny_cpu.yaml data.store=store/ data.plan=plans/two-stage
    polyglot-lion score    --refs refs.jsonl --hyps hyps.jsonl --language zh --json   # WER/CER, the paper's way

Each command is two functions side by side in its group's module, ``add_<command>(sub)`` (its parser) and
``cmd_<command>(args)`` (its handler, returning the exit status): ``data`` (synth, prepare, recipes, balance, stats),
``train`` (convert, train), ``evaluate`` (score, evaluate), ``inference`` (transcribe, serve) and ``registry``
(models, runs). A new command is those two functions plus one line in ``COMMANDS`` below. Torch, Ray and MLflow are
imported only inside the handlers that need them, so ``polyglot-lion --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..data.synth import EspeakMissing
from . import data, evaluate, inference, registry, train
from .errors import UsageError
from .train import skipped_summary

__all__ = ["COMMANDS", "UsageError", "build_parser", "main", "skipped_summary"]

# command -> (add its parser, run it), in the order `polyglot-lion --help` lists them
COMMANDS = {
    "synth": (data.add_synth, data.cmd_synth),
    "prepare": (data.add_prepare, data.cmd_prepare),
    "recipes": (data.add_recipes, data.cmd_recipes),
    "balance": (data.add_balance, data.cmd_balance),
    "stats": (data.add_stats, data.cmd_stats),
    "convert": (train.add_convert, train.cmd_convert),
    "train": (train.add_train, train.cmd_train),
    "score": (evaluate.add_score, evaluate.cmd_score),
    "transcribe": (inference.add_transcribe, inference.cmd_transcribe),
    "evaluate": (evaluate.add_evaluate, evaluate.cmd_evaluate),
    "serve": (inference.add_serve, inference.cmd_serve),
    "models": (registry.add_models, registry.cmd_models),
    "runs": (registry.add_runs, registry.cmd_runs),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyglot-lion", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"polyglot-lion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, EspeakMissing) as e:
        print(f"polyglot-lion {args.command}: error: {e}", file=sys.stderr)
        return 2
