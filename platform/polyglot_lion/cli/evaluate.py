"""The scoring commands: ``score`` (two JSONL files) and ``evaluate`` (a model on the store's test sets), each
parser beside its handler."""

from __future__ import annotations

import json
import os

from ..evaluation.evaluate import evaluate
from ..evaluation.scoring import metric_for, score_files
from ..storage import check_location, resolve
from .errors import UsageError


def add_score(sub) -> None:
    p = sub.add_parser("score", help="WER (en, ta, ms) or CER (zh) of hypotheses against references",
                       description="Score two JSONL files of {\"id\", \"text\"} lines joined by id, the paper's way: "
                                   "normalised (lowercase, no punctuation), pooled over utterances, in percent. "
                                   "A missing hypothesis counts as empty; empty references are dropped and counted.")
    p.add_argument("--refs", required=True, help="reference transcripts, JSONL of {\"id\", \"text\"}")
    p.add_argument("--hyps", required=True, help="hypotheses, JSONL of {\"id\", \"text\"}")
    p.add_argument("--language", required=True, help="en, zh, ta or ms (zh is scored in CER, the others in WER)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")


def cmd_score(args) -> int:
    try:
        metric_for(args.language)
    except ValueError as e:
        raise UsageError(f"--language: {e}") from None
    for flag, path in (("--refs", args.refs), ("--hyps", args.hyps)):
        if not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    result = score_files(args.refs, args.hyps, args.language)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"{result.metric.upper()} {result.error_rate:.2f}% over {result.utterances} utterances "
          f"({result.reference_units} reference {'characters' if result.metric == 'cer' else 'words'}: "
          f"S={result.substitutions} D={result.deletions} I={result.insertions}); "
          f"dropped empty refs {result.dropped_empty_refs}, missing hyps {result.missing_hypotheses}, "
          f"extra hyps {result.extra_hypotheses}")
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WER/CER on the store's test sets beside the paper's published rows",
                       description="Transcribe every test set of the store, score it the paper's way and write "
                                   "OUT/results.json, results.md, results.png and hypotheses.jsonl; log them to "
                                   "MLflow and tag the model version with its scores.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION, "
                                                  "runs:/RUN_ID or a hub id")
    p.add_argument("--store", required=True, help="store folder or bucket location written by 'prepare'")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--benchmarks", help="comma-separated datasets or paper columns (default: all in the store)")
    p.add_argument("--out", default="eval_out", help="output folder or bucket location (default eval_out)")
    p.add_argument("--max-utterances", type=int, help="at most N utterances per test set")
    p.add_argument("--batch-size", type=int, default=16, help="clips per generate() call (default 16)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")


def cmd_evaluate(args) -> int:
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()] if args.benchmarks else None
    # a missing or denied bucket fails here, naming it, before the model loads
    check_location(args.store, write=False, what="--store", must_exist=False)
    check_location(args.out, write=True, what="--out")
    res = evaluate(args.model, args.store, args.split, benchmarks, args.out, args.tracking_uri,
                   args.max_utterances, args.batch_size, log_to_mlflow=not args.no_mlflow, progress=not args.json)
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    print(resolve(res["files"]["md"]).read_text())
    print(f"results: {res['files']['json']}, {res['files']['md']}, {res['files']['png']}"
          + (f"; MLflow run {res['mlflow']['run_id']} ({res['mlflow']['tracking_uri']})" if res.get("mlflow") else ""))
    return 0
