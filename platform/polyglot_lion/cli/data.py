"""The data commands: ``synth``, ``prepare``, ``recipes``, ``balance`` and ``stats``, each parser beside its handler."""

from __future__ import annotations

import json
from collections import Counter

from ..data.balance import STRATEGIES, corpus_from_table, make_plan, plot_balance, write_plan
from ..data.importers import FORMATS, FormatOptions
from ..data.prepare import ImportSpec, PrepareOptions, format_summary, load_specs, prepare, validate_specs
from ..data.recipes import format_recipes, recipes
from ..data.schema import check_language, check_split
from ..data.stats import format_stats, store_stats
from ..data.store import read_metadata, store_fingerprint
from ..data.synth import corpus_hours, synthesize_corpus
from ..runtime import init_ray
from ..storage import check_location
from .errors import UsageError


def add_synth(sub) -> None:
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


def cmd_synth(args) -> int:
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


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="import a corpus (or several) into the store with Ray Data",
                       description="Read corpora as downloaded, decode to 16 kHz mono FLAC, normalise transcripts "
                                   "and write Parquet shards to STORE/data/SPLIT/LANGUAGE/DATASET. Bad records are "
                                   "skipped and listed with their reason in the partition's _rejects.jsonl. "
                                   "Re-importing a dataset/split replaces it.")
    p.add_argument("--store", required=True, help="store folder (created if missing) or bucket location "
                                                  "(s3://bucket/prefix, gs://bucket/prefix)")
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
    p.add_argument("--batch-size", type=int, default=128,
                   help="clips per Ray Data task and at most per shard (default 128)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def cmd_prepare(args) -> int:
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
    check_location(args.store, write=True, what="--store")  # a missing or denied bucket fails before Ray starts
    started = init_ray(num_cpus=args.num_cpus)
    try:
        metas = prepare(specs, args.store, options)
    finally:
        if started:
            import ray  # heavy (Ray): `polyglot-lion --help` and the other commands never load it

            ray.shutdown()
    if args.json:
        print(json.dumps({"store": args.store, "imports": metas}))
    else:
        print(format_summary(metas))
        print(f"\nstore: {args.store}   rejects: {args.store}/data/<split>/<language>/<dataset>/gen-*/_rejects.jsonl "
              f"(the generation its _commit.json names)")
    return 0


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="the corpus recipes: what each imports, the download it expects, where to get it",
                       description="One recipe per corpus of the paper; 'prepare --recipe NAME --input DIR' runs one.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text")


def cmd_recipes(args) -> int:
    if args.json:
        print(json.dumps({r.name: {"title": r.title, "datasets": r.datasets, "splits": list(r.splits),
                                   "made_split_test": r.made_split_test, "download": r.download,
                                   "expects": r.expects, "cleans": r.cleans} for r in recipes().values()}))
    else:
        print(format_recipes())
    return 0


def add_balance(sub) -> None:
    p = sub.add_parser("balance", help="compute a balanced training plan (two-stage, temperature or natural)",
                       description="Compute which utterances training streams and how often. 'two-stage' is the "
                                   "paper's algorithm: every language exactly 25%%.")
    p.add_argument("--store", required=True, help="store folder or bucket location")
    p.add_argument("--split", default="train", help="split to balance (default train)")
    p.add_argument("--strategy", choices=STRATEGIES, default="two-stage", help="default two-stage")
    p.add_argument("--temperature", type=float, default=3.0, help="T for --strategy temperature (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="plan folder or bucket location: plan.parquet + summary.json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", help="write a before/after bar chart to this PNG")


def cmd_balance(args) -> int:
    check_split(args.split, "--split")
    check_location(args.store, write=False, what="--store", must_exist=False)
    check_location(args.out, write=True, what="--out")
    meta = read_metadata(args.store, args.split, columns=["id", "language", "dataset", "duration_s"])
    if meta.num_rows == 0:
        raise UsageError(f"--store {args.store}: no utterances in split {args.split!r}")
    corpus, durations = corpus_from_table(meta)
    plan = make_plan(corpus, args.strategy, args.seed, args.temperature)
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


def add_stats(sub) -> None:
    p = sub.add_parser("stats", help="utterances, hours and rejects per dataset and language",
                       description="Per dataset: language, split, utterances, hours, rejected by reason; "
                                   "per language totals.")
    p.add_argument("--store", required=True, help="store folder or bucket location")
    p.add_argument("--split", help="only this split")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def cmd_stats(args) -> int:
    check_location(args.store, write=False, what="--store", must_exist=False)
    stats = store_stats(args.store, args.split)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0
