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
"""

from __future__ import annotations

import argparse
import json
import os
import sys


class UsageError(Exception):
    """Bad input from the user: printed as one clear message, exit status 2."""


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic, skewed four-language corpus with espeak-ng",
                       description="Write a synthetic corpus shaped like the paper's Table 1 (JSONL + WAV) "
                                   "and OUT/corpus.json, the list of imports for 'prepare --specs'.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train-utterances", type=int, default=600, help="train utterances over all datasets (default 600)")
    p.add_argument("--eval-utterances", type=int, default=6, help="dev and test utterances per dataset (default 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-words", type=int, default=2, help="shortest sentence in words (default 2)")
    p.add_argument("--max-words", type=int, default=8, help="longest sentence in words (default 8)")
    p.add_argument("--languages", default="en,zh,ta,ms", help="comma-separated subset of en,zh,ta,ms")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_prepare(sub) -> None:
    from .data.importers import FORMATS

    p = sub.add_parser("prepare", help="import a corpus (or several) into the store with Ray Data",
                       description="Read corpora as downloaded, decode to 16 kHz mono FLAC, normalise transcripts "
                                   "and write Parquet shards to STORE/data/SPLIT/LANGUAGE/DATASET. Bad records are "
                                   "skipped and listed with their reason in the partition's _rejects.jsonl. "
                                   "Re-importing a dataset/split replaces it.")
    p.add_argument("--store", required=True, help="store folder (created if missing)")
    p.add_argument("--recipe", help="import a whole corpus as its publisher ships it (see 'polyglot-lion recipes'): "
                                    "--input is the download folder; every split it holds is imported")
    p.add_argument("--specs", help="JSON or YAML file with a list of imports ({recipe,input,language} or "
                                   "{format,input,dataset,language,split,...}) or {root: DIR, imports: [...]}, "
                                   "e.g. jobs/configs/corpora/paper.yaml or the corpus.json written by 'synth'")
    p.add_argument("--root", help="--specs: folder that relative inputs are taken from (default: the file's "
                                  "'root', else the file's folder)")
    p.add_argument("--test-utterances", type=int, help="--recipe for a corpus with no official split (nsc, slr65, "
                                                       "mesolitica): test utterances of the made, speaker-disjoint "
                                                       "split (default: the paper's test set size)")
    p.add_argument("--seed", type=int, default=0, help="--recipe: seed of a made split (default 0)")
    p.add_argument("--format", choices=FORMATS, help="how the corpus is laid out (one manifest or folder)")
    p.add_argument("--input", help="recipe: the download folder; format: manifest file, Kaldi/LibriSpeech folder, "
                                   "Parquet file/folder, or lhotse manifest")
    p.add_argument("--dataset", help="dataset name, e.g. aishell1 (letters, digits, _ . -)")
    p.add_argument("--language", help="en, zh, ta or ms (a recipe covering several languages needs it)")
    p.add_argument("--split", help="train, dev or test")
    p.add_argument("--max-duration", type=float, default=30.0,
                   help="drop clips longer than this many seconds (default 30, as the paper; 0 = no limit)")
    p.add_argument("--min-duration", type=float, default=0.0, help="drop clips shorter than this (default 0)")
    p.add_argument("--max-foreign-script", type=float, default=None,
                   help="reject (wrong_script) a transcript with more than this share of its words in another "
                        "script than its language's (default 0.5: code-switching below it is kept; 1 = no check)")
    p.add_argument("--audio-column", help="jsonl: audio|audio_filepath; csv: path; parquet: audio")
    p.add_argument("--text-column", help="jsonl/parquet: text; csv: sentence")
    p.add_argument("--speaker-column", help="csv: client_id; jsonl/parquet: speaker")
    p.add_argument("--id-column", help="jsonl/parquet: id (default: from the audio file name)")
    p.add_argument("--clips-dir", help="csv: folder of the clips (default: clips/ beside the manifest)")
    p.add_argument("--delimiter", help="csv: field delimiter (default: tab for .tsv, comma otherwise)")
    p.add_argument("--batch-size", type=int, default=128, help="clips per Ray Data task and per shard (default 128)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _add_balance(sub) -> None:
    from .data.balance import STRATEGIES

    p = sub.add_parser("balance", help="compute a balanced training plan (two-stage, temperature or natural)",
                       description="Compute which utterances training streams and how often. 'two-stage' is the "
                                   "paper's algorithm: every language exactly 25%%.")
    p.add_argument("--store", required=True, help="store folder")
    p.add_argument("--split", default="train", help="split to balance (default train)")
    p.add_argument("--strategy", choices=STRATEGIES, default="two-stage", help="default two-stage")
    p.add_argument("--temperature", type=float, default=3.0, help="T for --strategy temperature (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="plan folder: plan.parquet + summary.json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", help="write a before/after bar chart to this PNG")


def _add_stats(sub) -> None:
    p = sub.add_parser("stats", help="utterances, hours and rejects per dataset and language",
                       description="Per dataset: language, split, utterances, hours, rejected by reason; "
                                   "per language totals.")
    p.add_argument("--store", required=True, help="store folder")
    p.add_argument("--split", help="only this split")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="the corpus recipes: what each imports, the download it expects, where to get it",
                       description="One recipe per corpus of the paper; 'prepare --recipe NAME --input DIR' runs one.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")


def cmd_recipes(args) -> int:
    from .data.recipes import format_recipes, recipes

    if args.json:
        print(json.dumps({r.name: {"title": r.title, "datasets": r.datasets, "splits": list(r.splits),
                                   "made_split_test": r.made_split_test, "download": r.download,
                                   "expects": r.expects, "cleans": r.cleans} for r in recipes().values()}))
    else:
        print(format_recipes())
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert an original-layout Qwen3-ASR checkpoint (thinker.*) to transformers format",
                       description="Original Qwen/Qwen3-ASR-* and Polyglot-Lion checkpoints (thinker.* weights, "
                                   "thinker_config) load in transformers as RANDOM weights; this writes a "
                                   "transformers-format copy whose weights equal the originals.")
    p.add_argument("src", help="original-format checkpoint folder")
    p.add_argument("dst", help="new folder for the transformers-format checkpoint (must not exist or be empty)")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune Qwen3-ASR with Ray Train (config YAML + key=value overrides)",
                       description="Train (or resume, for an existing run.name) with Ray Train; metrics, the "
                                   "config and the final model go to MLflow. 'polyglot-lion train --describe' "
                                   "lists every config key.")
    p.add_argument("--config", help="YAML config, e.g. jobs/configs/qwen3_asr/tiny_cpu.yaml")
    p.add_argument("overrides", nargs="*", help="SECTION.KEY=VALUE, e.g. data.store=store train.max_steps=100")
    p.add_argument("--describe", action="store_true", help="print every config key with its default and help")


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="WER (en, ta, ms) or CER (zh) of hypotheses against references",
                       description="Score two JSONL files of {\"id\", \"text\"} lines joined by id, the paper's way: "
                                   "normalised (lowercase, no punctuation), pooled over utterances, in percent. "
                                   "A missing hypothesis counts as empty; empty references are dropped and counted.")
    p.add_argument("--refs", required=True, help="reference transcripts, JSONL of {\"id\", \"text\"}")
    p.add_argument("--hyps", required=True, help="hypotheses, JSONL of {\"id\", \"text\"}")
    p.add_argument("--language", required=True, help="en, zh, ta or ms (zh is scored in CER, the others in WER)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a line")


def _add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="bulk-transcribe folders, archives, manifests or a store split (Ray Data)",
                       description="Every input gets exactly one output row (id, source, text, language, duration_s, "
                                   "error) in OUT/transcripts.parquet and OUT/transcripts.jsonl. Re-running on the "
                                   "same OUT skips what is done and finishes the rest.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION, "
                                                  "runs:/RUN_ID or a hub id")
    p.add_argument("--input", required=True, nargs="+", help="folder tree, .tar/.tar.gz/.zip, .jsonl manifest "
                                                             "({id, audio}) or a store folder (with --split)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, help="transcribe at most N inputs (in id order)")
    p.add_argument("--language", help="force a language (en, zh, ta, ms); default: language-agnostic")
    p.add_argument("--max-duration", type=float, help="inputs longer than this many seconds get error too_long "
                                                      "(default: any length, cut into chunks)")
    p.add_argument("--split", default="test", help="split of a store input (default test)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per generate() call (default 16)")
    p.add_argument("--max-new-tokens", type=int, help="fixed token budget per clip (default: 16 + 15 per second "
                                                      "of the longest clip in the batch)")
    p.add_argument("--actors", type=int, help="transcriber actors (default: one per GPU, else 1)")
    p.add_argument("--retry-errors", action="store_true", help="run again the inputs whose last row is an error "
                                                              "(a file not yet copied); the new row replaces it")
    p.add_argument("--max-input-mb", type=float, default=512.0, help="largest file or archive member read, in MB "
                                                                     "(default 512; larger: error file_too_large)")
    p.add_argument("--max-decoded-mb", type=float, default=512.0,
                   help="most MiB one input may decode to at its own rate and channels (default 512: 23 min of "
                        "48 kHz stereo, 2.3 h of 16 kHz mono; more: "
                        "error over_decode_limits, refused from the header)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ (default "
                                          "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WER/CER on the store's test sets beside the paper's published rows",
                       description="Transcribe every test set of the store, score it the paper's way and write "
                                   "OUT/results.json, results.md, results.png and hypotheses.jsonl; log them to "
                                   "MLflow and tag the model version with its scores.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION, "
                                                  "runs:/RUN_ID or a hub id")
    p.add_argument("--store", required=True, help="store folder written by 'prepare'")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--benchmarks", help="comma-separated datasets or paper columns (default: all in the store)")
    p.add_argument("--out", default="eval_out", help="output folder (default eval_out)")
    p.add_argument("--max-utterances", type=int, help="at most N utterances per test set")
    p.add_argument("--batch-size", type=int, default=16, help="clips per generate() call (default 16)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP transcription service (Ray Serve) in the foreground",
                       description="Start a local Ray instance and the Serve app (OpenAI-compatible "
                                   "POST /v1/audio/transcriptions, GET /v1/models, /healthz, an upload page at /). "
                                   "Ctrl-C or SIGTERM stops it cleanly.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION or "
                                                  "runs:/RUN_ID")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 to expose)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-file", help="require 'Authorization: Bearer <key>' with the key in this file "
                                          "(or set POLYGLOT_LION_API_KEY)")
    p.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    p.add_argument("--max-batch-size", type=int, default=16,
                   help="clips decoded at once: the decode loop's slots (default 16)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="upload limit, 413 above (default 25)")
    p.add_argument("--max-audio-s", type=float, default=600.0, help="audio length limit, 413 above (default 600)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ (default $MLFLOW_TRACKING_URI or "
                                          "sqlite:///mlflow.db)")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="the MLflow model registry: list, show (with eval scores), promote",
                       description="Registered models and their versions in MLflow (tracking URI: --tracking-uri, "
                                   "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.add_argument("--json", action="store_true", help="print JSON")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("list", help="registered models with their version count and aliases")
    show = msub.add_parser("show", help="versions of a model with aliases, training run and evaluation scores")
    show.add_argument("name")
    prom = msub.add_parser("promote", help="point an alias (e.g. champion) at a version")
    prom.add_argument("name")
    prom.add_argument("version")
    prom.add_argument("--alias", required=True, help="alias to set, e.g. champion or staging")


def _add_runs(sub) -> None:
    p = sub.add_parser("runs", help="compare training (or evaluation) runs in MLflow",
                       description="A table of runs with their key params and metrics, newest first.")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmp_ = rsub.add_parser("compare", help="table of runs of an experiment")
    cmp_.add_argument("--experiment", default="polyglot-lion", help="experiment (default polyglot-lion; "
                                                                    "evaluations: polyglot-lion-eval)")
    cmp_.add_argument("--max-runs", type=int, default=50, help="newest N runs (default 50)")
    cmp_.add_argument("--tracking-uri", help="MLflow tracking URI")
    cmp_.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="polyglot-lion", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"polyglot-lion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_prepare, _add_recipes, _add_balance, _add_stats, _add_convert, _add_train, _add_score,
                _add_transcribe, _add_evaluate, _add_serve,
                _add_models, _add_runs):
        add(sub)
    return parser


def cmd_synth(args) -> int:
    from .data.schema import check_language
    from .data.synth import corpus_hours, synthesize_corpus

    langs = tuple(check_language(x.strip(), "--languages item") for x in args.languages.split(",") if x.strip())
    if args.train_utterances < 1 or args.eval_utterances < 0:
        raise UsageError(f"--train-utterances must be >= 1 and --eval-utterances >= 0 "
                         f"(are {args.train_utterances}, {args.eval_utterances})")
    if not 1 <= args.min_words <= args.max_words:
        raise UsageError(f"need 1 <= --min-words <= --max-words (are {args.min_words}, {args.max_words})")
    specs = synthesize_corpus(args.out, args.train_utterances, args.eval_utterances, args.seed,
                              args.min_words, args.max_words, langs, progress=not args.quiet)
    print(f"wrote {len(specs)} manifests, {corpus_hours(specs):.3f} h of audio, to {args.out}; "
          f"imports listed in {args.out}/corpus.json")
    return 0


def cmd_prepare(args) -> int:
    from .data.importers import FormatOptions
    from .data.prepare import ImportSpec, PrepareOptions, format_summary, load_specs, prepare, validate_specs
    from .runtime import init_ray

    single = [args.format, args.dataset, args.split]
    if args.specs:
        if any(single) or args.recipe or args.input or args.language:
            raise UsageError("--specs replaces --recipe/--format/--input/--dataset/--language/--split; "
                             "give one or the other")
        specs = load_specs(args.specs, args.root)
    elif args.recipe:
        if any(single):
            raise UsageError("--recipe names the dataset and splits itself; do not give --format/--dataset/--split")
        if not args.input:
            raise UsageError("prepare --recipe needs --input (the corpus's download folder)")
        specs = [ImportSpec(input=args.input, language=args.language or "", recipe=args.recipe,
                            test_utterances=args.test_utterances, seed=args.seed)]
    else:
        missing = [n for n, v in zip(("--format", "--input", "--dataset", "--language", "--split"),
                                     [args.format, args.input, args.dataset, args.language, args.split]) if not v]
        if missing:
            raise UsageError(f"prepare needs --recipe NAME --input DIR, or {', '.join(missing)} (or --specs FILE)")
        opts = FormatOptions(args.audio_column, args.text_column, args.speaker_column, args.id_column,
                             args.clips_dir, args.delimiter)
        specs = [ImportSpec(args.format, args.input, args.dataset, args.language, args.split, opts)]
    validate_specs(specs)  # fail before Ray starts
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1 (is {args.batch_size})")
    foreign = PrepareOptions.max_foreign_script if args.max_foreign_script is None else args.max_foreign_script
    if not 0.0 <= foreign <= 1.0:
        raise UsageError(f"--max-foreign-script must be between 0 and 1 (is {foreign})")
    options = PrepareOptions(max_duration_s=args.max_duration or None, min_duration_s=args.min_duration,
                             max_foreign_script=None if foreign >= 1.0 else foreign, batch_size=args.batch_size)
    started = init_ray(num_cpus=args.num_cpus)
    try:
        metas = prepare(specs, args.store, options)
    finally:
        if started:
            import ray

            ray.shutdown()
    if args.json:
        print(json.dumps({"store": args.store, "imports": metas}))
    else:
        print(format_summary(metas))
        print(f"\nstore: {args.store}   rejects: {args.store}/data/<split>/<language>/<dataset>/_rejects.jsonl")
    return 0


def cmd_balance(args) -> int:
    from .data.balance import corpus_from_table, make_plan, plot_balance, write_plan
    from .data.schema import check_split
    from .data.store import read_metadata

    check_split(args.split, "--split")
    meta = read_metadata(args.store, args.split, columns=["id", "language", "dataset", "duration_s"])
    if meta.num_rows == 0:
        raise UsageError(f"--store {args.store}: no utterances in split {args.split!r}")
    corpus, durations = corpus_from_table(meta)
    plan = make_plan(corpus, args.strategy, args.seed, args.temperature)
    from collections import Counter

    from .data.store import store_fingerprint

    rows = {ds: n for ds, n in sorted(Counter(meta["dataset"].to_pylist()).items())}
    summary = write_plan(plan, durations, meta, args.out,
                         extra={"store": args.store, "split": args.split,
                                "store_fingerprint": store_fingerprint(args.store, args.split),
                                "store_rows_per_dataset": rows})
    if args.plot:
        plot_balance(f"{args.out}/summary.json", args.plot)
    if args.json:
        print(json.dumps(summary))
        return 0
    before = {}
    for lang, _ in corpus:
        before[lang] = before.get(lang, 0) + len(corpus[(lang, _)])
    total_before = sum(before.values())
    print(f"strategy {summary['strategy']}, seed {summary['seed']}: {total_before} -> {summary['total']} utterances")
    print(f"{'language':<10}{'before':>8}{'share':>8}{'stage1':>8}{'after':>8}{'share':>8}  datasets after")
    for lang, v in summary["languages"].items():
        ds = ", ".join(f"{k}={n}" for k, n in v["datasets"].items())
        print(f"{lang:<10}{before[lang]:>8}{100 * before[lang] / total_before:>7.1f}%{v['stage1']:>8}"
              f"{v['utterances']:>8}{100 * v['utterances'] / summary['total']:>7.1f}%  {ds}")
    print(f"\nplan: {args.out}/plan.parquet" + (f"   plot: {args.plot}" if args.plot else ""))
    return 0


def cmd_stats(args) -> int:
    from .data.stats import format_stats, store_stats

    stats = store_stats(args.store, args.split)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0


def cmd_convert(args) -> int:
    from .model.convert import convert_checkpoint

    stats = convert_checkpoint(args.src, args.dst)
    print(f"converted {stats['weights']} tensors ({stats['renamed']} renamed) -> {args.dst}; "
          f"load it with polyglot_lion.model.loading.load_model('{args.dst}')")
    return 0


def cmd_train(args) -> int:
    from .config import describe, load_config

    if args.describe:
        print(describe())
        return 0
    cfg = load_config(args.config, args.overrides)  # every problem reported before Ray starts
    from .train.run import train

    out = train(cfg)
    print(json.dumps(out, indent=2, default=str))
    mv = out.get("model_version")
    print(f"\nMLflow run {out['mlflow_run_id']} in {out['tracking_uri']}"
          + (f"; registered {mv['name']} version {mv['version']}" if mv else ""))
    if cfg.train.select_by != "last" and out.get("model_step") is not None:
        print(f"the run's model is the checkpoint of step {out['model_step']} (lowest {cfg.train.select_by} of "
              f"those kept): {out['checkpoint']}; a resume starts from {out['latest_checkpoint']}")
    if out.get("already_finished"):
        print(f"nothing left to train: run {cfg.run.name!r} had already finished (step "
              f"{(out.get('metrics') or {}).get('step', '?')}); its model and version are as they were")
    if out.get("stopped_early_at_step") is not None:
        print(f"stopped early at step {out['stopped_early_at_step']} of {cfg.train.max_steps}: "
              f"{cfg.train.select_by} did not improve for {cfg.train.early_stop_patience} checkpoints "
              "(train.early_stop_patience)")
    said = skipped_summary(out.get("metrics") or {})
    if said:
        print(said)
    return 0


def skipped_summary(metrics: dict) -> str | None:
    """One line on the training utterances a run dropped (from its final metrics), or None if it dropped none."""
    if not metrics.get("skipped_utterances"):
        return None
    reasons = ", ".join(f"{k[len('skipped_'):]}={v:.0f}" for k, v in sorted(metrics.items())
                        if k.startswith("skipped_") and k != "skipped_utterances")
    return (f"{metrics['skipped_utterances']:.0f} training utterance(s) skipped: they could not be featurised "
            f"({reasons}; the first are named in the job's log)")


def cmd_score(args) -> int:
    from .evaluation.scoring import metric_for, score_files

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


def cmd_transcribe(args) -> int:
    from .inference.bulk import BulkOptions, transcribe_bulk

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1 (is {args.limit})")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1 (is {args.batch_size})")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1 (is {args.max_new_tokens})")
    opts = BulkOptions(limit=args.limit, language=args.language, max_duration_s=args.max_duration,
                       batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, actors=args.actors,
                       split=args.split, tracking_uri=args.tracking_uri, retry_errors=args.retry_errors,
                       max_input_mb=args.max_input_mb, max_decoded_mb=args.max_decoded_mb)
    summary = transcribe_bulk(args.model, args.input, args.out, opts)
    print(json.dumps(summary, indent=2))
    print(f"\n{summary['outputs']} rows ({summary['transcribed']} transcribed, "
          f"{sum(summary['errors'].values())} with an error) in {args.out}/transcripts.parquet and .jsonl")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.evaluate import evaluate

    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()] if args.benchmarks else None
    res = evaluate(args.model, args.store, args.split, benchmarks, args.out, args.tracking_uri,
                   args.max_utterances, args.batch_size, log_to_mlflow=not args.no_mlflow, progress=not args.json)
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return 0
    print(open(res["files"]["md"], encoding="utf-8").read())
    print(f"results: {res['files']['json']}, {res['files']['md']}, {res['files']['png']}"
          + (f"; MLflow run {res['mlflow']['run_id']} ({res['mlflow']['tracking_uri']})" if res.get("mlflow") else ""))
    return 0


def cmd_serve(args) -> int:
    import signal
    import threading

    from .serving.app import build_app

    if args.api_key_file and not os.path.isfile(args.api_key_file):
        raise UsageError(f"--api-key-file {args.api_key_file}: no such file")
    settings = {"model": args.model, "tracking_uri": args.tracking_uri, "api_key_file": args.api_key_file,
                "max_batch_size": args.max_batch_size, "max_upload_mb": args.max_upload_mb,
                "max_audio_s": args.max_audio_s}
    from .inference.source import resolve_model

    resolve_model(args.model, args.tracking_uri)  # a bad model fails here, before Ray starts
    app = build_app(settings, {"num_replicas": args.replicas})
    import ray
    from ray import serve

    from .runtime import init_ray

    stop = threading.Event()
    started = init_ray()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="polyglot-lion", route_prefix="/", blocking=False)
        print(f"serving {args.model} at http://{args.host}:{args.port}/ (OpenAI-compatible "
              f"/v1/audio/transcriptions); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping...", flush=True)
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
    return 0


def cmd_models(args) -> int:
    from . import registry

    if args.action == "list":
        rows = registry.list_models(args.tracking_uri)
        print(json.dumps(rows, indent=2) if args.json else
              registry.table(rows, ["name", "versions", "latest", "aliases", "updated"]) if rows
              else "no registered models yet (training registers one per run)")
    elif args.action == "show":
        info = registry.show_model(args.name, args.tracking_uri)
        print(json.dumps(info, indent=2) if args.json else registry.format_model(info))
    else:
        out = registry.promote(args.name, args.version, args.alias, args.tracking_uri)
        print(json.dumps(out) if args.json else
              f"{out['name']}@{out['alias']} -> version {out['version']}"
              + (f" (was {out['previous']})" if out["previous"] else "")
              + f"; serve it as models:/{out['name']}@{out['alias']}")
    return 0


def cmd_runs(args) -> int:
    from . import registry

    rows, cols = registry.compare_runs(args.experiment, args.tracking_uri, args.max_runs)
    print(json.dumps(rows, indent=2, default=str) if args.json else registry.table(rows, cols))
    return 0


COMMANDS = {"synth": cmd_synth, "prepare": cmd_prepare, "recipes": cmd_recipes, "balance": cmd_balance, "stats": cmd_stats, "convert": cmd_convert, "train": cmd_train,
            "transcribe": cmd_transcribe, "evaluate": cmd_evaluate, "serve": cmd_serve,
            "models": cmd_models, "runs": cmd_runs,
            "score": cmd_score}


def main(argv: list[str] | None = None) -> int:
    from .data.synth import EspeakMissing

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, EspeakMissing) as e:
        print(f"polyglot-lion {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
