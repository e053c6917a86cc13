"""The main job on embedded defaults, end to end: ``make demo``.

    python -m polyglot_lion.demo --out demo_out [--train-minutes 5] [--verbose]

Synthetic four-language corpus (espeak-ng; no download) -> import into the store with Ray Data -> two-stage
balancing -> evaluate the base model -> fine-tune it with Ray Train for a fixed wall-time budget (MLflow run +
registered version) -> promote it -> evaluate again, before/after table -> bulk-transcribe a folder with Ray Data
-> start the Serve app, send one request over HTTP, shut it down -> what ran, where everything is, the time per
stage.

The base model is a small Qwen3-ASR (the ``demo`` preset) shipped in the package (``polyglot_lion/assets/demo-base``),
trained by ``jobs/experiments/build_demo_base.py`` on this very synthetic corpus with natural sampling, so Malay, the
scarcest language, is its weakest: the demo fine-tunes it with the paper's two-stage balancing, as the paper
fine-tunes a pretrained Qwen3-ASR. Training from scratch is most of the learning and would not fit ten minutes
(``--from-scratch`` does it: ~15 minutes of training to show learning). Training runs for ``--train-minutes`` of
wall time (``train.max_minutes``), so a slower machine trains fewer steps rather than taking longer.

The screen shows the demo's own tables and, on a terminal, one progress bar per long stage; what the libraries
write besides (Ray's and Ray Data's logs, warnings) goes to OUT/demo-details.log unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import ray

from .config import load_config
from .data.balance import corpus_from_table, make_plan, plot_balance, write_plan
from .data.prepare import ImportSpec, PrepareOptions, format_summary, prepare
from .data.stats import format_stats, store_stats
from .data.store import read_metadata
from .data.synth import corpus_hours, synthesize_corpus
from .demo_base import SHIPPED, shipped_base
from .evaluation.evaluate import evaluate
from .inference.bulk import BulkOptions, transcribe_bulk
from .model.loading import parameter_count
from .runtime import init_ray
from .serving.app import build_app
from .tracking.registry import promote
from .train.run import prepare_base_model, train

CONFIG = "jobs/configs/qwen3_asr/tiny_cpu.yaml"


class _MainThreadStdout:
    """stdout for the demo's screen: what its main thread prints. What other threads print (Ray's error listener:
    raylet warnings about worker counts, retried shutdown tasks) goes to stderr, that is the log file."""

    def __init__(self, out):
        self.out = out

    def write(self, text: str) -> int:
        sink = self.out if threading.current_thread() is threading.main_thread() else sys.stderr
        return sink.write(text)

    def __getattr__(self, name):
        return getattr(self.out, name)


class Screen:
    """The demo's screen. Its own lines go to stdout. Unless ``verbose``, everything the libraries write to
    stderr (Ray's and Ray Data's logs and progress lines, Ray's C++ logs, warnings, transformers' bars) goes to
    ``log_path`` instead (file descriptor 2 is redirected, so C++ and child-process output follows), so does what
    threads other than the main one print, and ``bars`` is the terminal to draw the demo's own progress bars on
    (False when stderr is not a terminal: a log file gets the tables, not the bars)."""

    def __init__(self, log_path: Path, verbose: bool):
        self.log_path, self.verbose = log_path, verbose
        self.bars = True  # verbose: tqdm's default, stderr
        self._saved = self._log = self._term = None

    def __enter__(self) -> "Screen":
        if self.verbose:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._log = open(self.log_path, "ab", buffering=0)
        os.dup2(self._log.fileno(), 2)
        self._term = os.fdopen(os.dup(self._saved), "w", buffering=1)
        self.bars = self._term if self._term.isatty() else False
        self._stdout, sys.stdout = sys.stdout, _MainThreadStdout(sys.stdout)
        return self

    def error(self, text: str) -> None:
        """On the terminal's stderr (and in the log), whatever the redirection."""
        for f in filter(None, (self._term, sys.stderr)):
            print(text, file=f, flush=True)

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        sys.stdout = self._stdout
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._term.close()
        self._log.close()


class Stages:
    """The numbered stage headers and the wall time of each (``timings``: title -> seconds)."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.n = 0

    @contextmanager
    def __call__(self, title: str, key: str):
        self.n += 1
        print(f"\n=== {self.n}. {title} ===", flush=True)
        t = time.time()
        try:
            yield
        finally:
            self.timings[key] = time.time() - t


def summary_text(out: Path, db: str, uri: str, timings: dict, wall_s: float, bulk: dict | None,
                 model_step: int | None, from_scratch: bool = False, parameters: int | None = None) -> str:
    """The closing summary: which component did what, where everything is, and the time per stage."""
    corpus_dir, store, plan_dir = out / "corpus", out / "store", out / "plans" / "two-stage"
    per_stage = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    errors = ", ".join(f"{n} {reason}" for reason, n in bulk["errors"].items()) if bulk else ""
    transcribed = f"{bulk['transcribed']} transcribed, errors counted: {errors or 'none'}" if bulk else "not run"
    return f"""What ran:
  Ray Data       imported the corpus into the store (decode, resample, FLAC, normalise) and fed training
  Ray Train      {"trained the random tiny model" if from_scratch else "fine-tuned the base model"} (one worker), checkpoints in {out}/runs/demo/
  MLflow         the training run, its curves and the registered model {uri} (step {model_step})
  Ray Data bulk  bulk-transcribed a folder ({transcribed}) -> {out}/transcripts/
  Ray Serve      answered one OpenAI-style request over HTTP, then shut down
Where things are:
  corpus, store, plan     {corpus_dir}, {store}, {plan_dir}
  balance chart           {out}/balance.png
  evaluations             {out}/eval_before/, {out}/eval_after/ (results.md, results.png, results.json)
  library logs            {out}/demo-details.log
  MLflow UI               mlflow ui --backend-store-uri {db} --host 127.0.0.1   (or: make mlflow-ui)
  registry                polyglot-lion models --tracking-uri {db} show polyglot-lion-tiny
  serve it yourself       MLFLOW_TRACKING_URI={db} polyglot-lion serve --model {uri}
Time per stage: {per_stage}; {wall_s:.0f} s in all ({out}/timings.json).
What the model is: a {f"{parameters / 1e6:.2g}M-parameter " if parameters else ""}Qwen3-ASR {"trained from scratch" if from_scratch else "fine-tuned"} for minutes on synthetic espeak-ng speech (random
sentences from ~75 words per language){"" if from_scratch else " from a base trained on the same corpus without balancing"}:
it shows the platform working end to end and the model learning, not a recogniser for real audio. WER on random word
sequences is harsh (no language model can guess the next word): read it beside the exact-match column."""


def _dev_rates(db: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient  # heavy (MLflow): only once a run is there to read

    history = MlflowClient(tracking_uri=db).get_metric_history(run_id, "dev_capped_error_rate")
    return ", ".join(f"step {m.step} {m.value:.1f}%" for m in sorted(history, key=lambda m: m.step))


def _before_after(before: dict, after: dict) -> str:
    lines = [f"{'test set':<12}{'lang':<6}{'metric':<7}{'before (capped)':>17}{'after (capped)':>16}"
             f"{'exact before':>14}{'exact after':>13}"]
    for d, b in before["benchmarks"].items():
        a = after["benchmarks"][d]
        lines.append(f"{d:<12}{b['language']:<6}{b['metric'].upper():<7}{b['capped_error_rate']:>16.1f}%"
                     f"{a['capped_error_rate']:>15.1f}%{b['exact_match']:>13.1f}%{a['exact_match']:>12.1f}%")
    lines.append("")
    lines.append(f"{'language':<12}{'before':>10}{'after':>10}   (mean error rate per language, capped at 100%)")
    for lang in sorted(before["languages"]):
        mb = [e["capped_error_rate"] for e in before["benchmarks"].values() if e["language"] == lang]
        ma = [e["capped_error_rate"] for e in after["benchmarks"].values() if e["language"] == lang]
        lines.append(f"{lang:<12}{sum(mb) / len(mb):>9.1f}%{sum(ma) / len(ma):>9.1f}%")
    return "\n".join(lines)


def _minutes(args) -> float:
    """The training budget: --train-minutes, else 5 minutes of fine-tuning or 15 from scratch."""
    return args.train_minutes if args.train_minutes is not None else (15.0 if args.from_scratch else 5.0)


def _train_overrides(args, store: Path, plan_dir: Path, out: Path, db: str, base: str) -> list[str]:
    """The demo's training settings on top of the tiny CPU config: a wall-time budget (train.max_minutes) with the
    schedule on the clock, a checkpoint and a dev transcription every 250 steps and at the end, the checkpoint with
    the lowest dev error rate registered."""
    scratch = args.from_scratch
    steps = args.train_steps or (3600 if scratch else 20000)  # an upper bound when the time budget ends the run
    every = max(50, steps // 4) if scratch and args.train_steps else 250
    return [f"data.store={store}", f"data.plan={plan_dir}", f"run.output_dir={out}/runs", "run.name=demo",
            f"run.seed={args.seed}", f"tracking.uri={db}", "tracking.registered_model=polyglot-lion-tiny",
            f"model.source={'tiny' if scratch else base}", f"train.max_steps={steps}",
            f"train.max_minutes={0 if args.train_steps else _minutes(args)}",
            f"train.checkpoint_every={every}", f"train.dev_eval_every={every}", "train.select_by=dev_capped_error_rate",
            "train.log_every=25", "train.dev_every=0", "train.warmup_ratio=0.05", "train.lr=0.001",
            "train.betas=[0.9, 0.98]", "data.max_frames_per_batch=8000", "data.max_batch_size=16",
            "scaling.num_workers=1", "scaling.cpus_per_worker=1"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m polyglot_lion.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out; replaced)")
    p.add_argument("--train-utterances", type=int, default=4800, help="synthetic train utterances (default 4800)")
    p.add_argument("--eval-utterances", type=int, default=8, help="dev/test utterances per dataset (default 8)")
    p.add_argument("--train-minutes", type=float, default=None,
                   help="wall-time budget of the training (train.max_minutes; default 5, 15 with --from-scratch)")
    p.add_argument("--train-steps", type=int, default=0, help="train this many steps instead of --train-minutes")
    p.add_argument("--from-scratch", action="store_true", help="train the random tiny model instead of "
                                                               "fine-tuning the shipped base")
    p.add_argument("--base", default=SHIPPED, help="the base model folder (default: the shipped one)")
    p.add_argument("--port", type=int, default=8000, help="port for the Serve step (default 8000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show Ray's and the libraries' logs and progress too")
    args = p.parse_args(argv)
    base = None if args.from_scratch else shipped_base(args.base)  # checked before anything is written

    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with Screen(out / "demo-details.log", args.verbose) as screen:
        try:
            return _run(args, out, base, screen)
        except BaseException as e:
            screen.error(f"\nthe demo stopped: {type(e).__name__}: {e}\n(traceback and library logs: "
                         f"{out}/demo-details.log)")
            traceback.print_exc()  # into the log (stderr)
            return 130 if isinstance(e, KeyboardInterrupt) else 1


def _run(args, out: Path, base: str | None, screen: Screen) -> int:
    corpus_dir, store, plan_dir = out / "corpus", out / "store", out / "plans" / "two-stage"
    db = f"sqlite:///{out}/mlflow.db"
    t0, stage, bars = time.time(), Stages(), screen.bars
    started = init_ray(quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = args.verbose  # its bars and per-operator log lines
    bulk, model_step, uri, parameters = None, None, "", None
    try:
        with stage("synthesise a skewed four-language corpus (espeak-ng)", "corpus"):
            specs = synthesize_corpus(str(corpus_dir), args.train_utterances, args.eval_utterances, args.seed,
                                      progress=bars)
            print(f"{len(specs)} manifests (12 datasets x train/dev/test), {corpus_hours(specs):.2f} h of 22.05 kHz "
                  f"WAV in {corpus_dir}. Sizes follow the paper's Table 1: English and Mandarin plentiful, Malay "
                  "scarce.")

        with stage("import into the store with Ray Data (decode, resample to 16 kHz, FLAC, normalise text)",
                   "import"):
            metas = prepare([ImportSpec.from_dict(s) for s in specs], str(store), PrepareOptions())
            print(format_summary(metas))
            print(f"-> Parquet shards in {store}/data/<split>/<language>/<dataset>/")

        with stage("what the store holds (polyglot-lion stats)", "stats"):
            print(format_stats(store_stats(str(store), "train")))

        with stage("balance the training split: the paper's two-stage upsampling", "balance"):
            _balance(store, plan_dir, out, args.seed)

        cfg = load_config(CONFIG if Path(CONFIG).exists() else None,
                          _train_overrides(args, store, plan_dir, out, db, base))
        what = "the random tiny model" if args.from_scratch else "the base model (trained without balancing)"
        with stage(f"evaluate {what} on the 12 synthetic test sets (before)", "evaluate before"):
            start = prepare_base_model(cfg, out / "runs" / "demo")  # the weights training starts from
            parameters = parameter_count(start)
            before = evaluate(start, str(store), out_dir=str(out / "eval_before"), tracking_uri=db,
                              label="before", log_to_mlflow=False, progress=bars)
            print(f"average error rate {before['average']:.1f}%")

        budget = (f"{cfg.train.max_steps} steps" if not cfg.train.max_minutes
                  else f"{cfg.train.max_minutes:g} minutes of steps")
        with stage(f"fine-tune it with Ray Train: {budget}, two-stage plan, language-agnostic targets", "train"):
            result = train(cfg, progress=bars)  # a bar from MLflow: this quiet driver hides the worker's lines
            mv, model_step = result["model_version"], result["model_step"]
            print(f"{result['metrics'].get('step')} steps; final loss {result['metrics'].get('loss', float('nan')):.3f}"
                  f"; MLflow run {result['mlflow_run_id']}; registered {mv['name']} version {mv['version']}")
            print(f"the registered model is the checkpoint of step {model_step}, the lowest dev error rate of those "
                  f"kept (dev error rate per checkpoint, capped at 100%: {_dev_rates(db, result['mlflow_run_id'])})")

        with stage("promote the new version in the registry", "promote"):
            prom = promote(mv["name"], str(mv["version"]), "champion", db)
            uri = f"models:/{prom['name']}@champion"
            print(f"{uri} -> version {prom['version']}")

        with stage(f"evaluate {uri} (after) and compare", "evaluate after"):
            after = evaluate(uri, str(store), out_dir=str(out / "eval_after"), tracking_uri=db, progress=bars)
            print(_before_after(before, after))
            print(f"\nfull table beside the paper's published rows: {out}/eval_after/results.md (chart results.png); "
                  "scores are tagged on the model version")

        with stage("bulk-transcribe a folder with Ray Data (one row per file, errors counted)", "bulk"):
            bulk = _bulk(uri, db, corpus_dir, out)

        with stage("serve it over HTTP (Ray Serve, OpenAI-compatible) and send one request", "serve"):
            _serve_once(uri, db, args.port, corpus_dir)
    finally:
        if started:
            ray.shutdown()
    wall = time.time() - t0
    (out / "timings.json").write_text(json.dumps({"stages_s": stage.timings, "wall_s": wall}, indent=1))
    print(f"\n=== done in {wall:.0f} s ===")
    print(summary_text(out, db, uri, stage.timings, wall, bulk, model_step, args.from_scratch, parameters))
    return 0


def _balance(store: Path, plan_dir: Path, out: Path, seed: int) -> None:
    meta = read_metadata(str(store), "train", columns=["id", "language", "dataset", "duration_s"])
    corpus, durations = corpus_from_table(meta)
    natural = sum(len(v) for v in corpus.values())
    plan = make_plan(corpus, "two-stage", seed)
    summary = write_plan(plan, durations, meta, str(plan_dir), extra={"store": str(store), "split": "train"})
    png = plot_balance(str(plan_dir / "summary.json"), str(out / "balance.png"))
    print(f"{'language':<9}{'natural':>9}{'after stage 1':>15}{'after stage 2':>15}{'share':>8}")
    for lang, v in summary["languages"].items():
        nat = sum(len(ids) for (lang2, _), ids in corpus.items() if lang2 == lang)
        print(f"{lang:<9}{nat:>9}{v['stage1']:>15}{v['utterances']:>15}{100 * v['utterances'] / summary['total']:>7.1f}%")
    print(f"{natural} utterances -> {summary['total']} references (no audio copied); chart: {png}")


def _bulk(uri: str, db: str, corpus_dir: Path, out: Path) -> dict:
    inbox = out / "inbox"
    for wav in sorted(corpus_dir.rglob("*.wav"))[:40]:
        dest = inbox / wav.parent.name / wav.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, dest)
    (inbox / "broken.wav").write_bytes(b"RIFF not really a wav")
    (inbox / "notes.txt").write_text("not audio")
    bulk = transcribe_bulk(uri, [str(inbox)], str(out / "transcripts"), BulkOptions(tracking_uri=db))
    print(json.dumps({k: bulk[k] for k in ("inputs", "outputs", "transcribed", "errors")}))
    first = (out / "transcripts" / "transcripts.jsonl").read_text().splitlines()[0]
    print(f"e.g. {first}\n-> {out}/transcripts/transcripts.parquet and .jsonl")
    return bulk


def _serve_once(uri: str, db: str, port: int, corpus_dir: Path) -> None:
    import httpx
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"model": uri, "tracking_uri": db}), name="demo", route_prefix="/", blocking=False)
        manifest = [json.loads(line) for line in (corpus_dir / "fleurs-ms" / "test.jsonl").read_text().splitlines()]
        wav, ref = corpus_dir / "fleurs-ms" / manifest[0]["audio"], manifest[0]["text"]
        with open(wav, "rb") as f:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions", timeout=120,
                           files={"file": (wav.name, f, "audio/wav")},
                           data={"model": "polyglot-lion", "response_format": "verbose_json"})
        print(f"POST /v1/audio/transcriptions {wav.name} -> {r.status_code}")
        print(json.dumps({k: r.json()[k] for k in ("text", "language", "duration", "model")}, ensure_ascii=False))
        print(f"reference: {ref}")
    finally:
        serve.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
