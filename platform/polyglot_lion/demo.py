"""The main job on embedded defaults, end to end: ``make demo``.

    python -m polyglot_lion.demo --out demo_out [--train-steps 3600]

Synthetic four-language corpus (espeak-ng; no download) -> import into the store with Ray Data -> two-stage
balancing -> evaluate the untrained tiny Qwen3-ASR -> train it with Ray Train (MLflow run + registered
version) -> promote it -> evaluate again, before/after table -> bulk-transcribe a folder -> start the Serve
app, send one request over HTTP, shut it down -> where everything is.

What the model is: a ~2.6M-parameter Qwen3-ASR built from scratch and trained for ~14 minutes on synthetic
speech (random sentences of ~75 words per language read by espeak-ng). It shows the platform working end to
end and learning to listen; it is not a speech recogniser for real audio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import ray

from .config import load_config
from .data.balance import corpus_from_table, make_plan, plot_balance, write_plan
from .data.prepare import ImportSpec, PrepareOptions, format_summary, prepare
from .data.stats import format_stats, store_stats
from .data.store import read_metadata
from .data.synth import corpus_hours, synthesize_corpus
from .evaluation.evaluate import evaluate
from .inference.bulk import BulkOptions, transcribe_bulk
from .runtime import init_ray
from .serving.app import build_app
from .tracking.registry import promote
from .train.run import prepare_base_model, train


def _step(n: int, title: str) -> float:
    print(f"\n=== {n}. {title} ===", flush=True)
    return time.time()


def _dev_rates(db: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m polyglot_lion.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out; replaced)")
    p.add_argument("--train-utterances", type=int, default=4800, help="synthetic train utterances (default 4800)")
    p.add_argument("--eval-utterances", type=int, default=8, help="dev/test utterances per dataset (default 8)")
    p.add_argument("--train-steps", type=int, default=3600, help="optimizer steps of the tiny model (default 3600, "
                                                                 "~14 min on 2 cores)")
    p.add_argument("--port", type=int, default=8000, help="port for the Serve step (default 8000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    corpus_dir, store, plan_dir = out / "corpus", out / "store", out / "plans" / "two-stage"
    db = f"sqlite:///{out}/mlflow.db"
    t0 = time.time()
    started = init_ray(quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = True
    try:
        t = _step(1, "synthesise a skewed four-language corpus (espeak-ng)")
        specs = synthesize_corpus(str(corpus_dir), args.train_utterances, args.eval_utterances, args.seed)
        print(f"{len(specs)} manifests (12 datasets x train/dev/test), {corpus_hours(specs):.2f} h of 22.05 kHz "
              f"WAV in {corpus_dir} ({time.time() - t:.0f} s). Sizes follow the paper's Table 1: English and "
              f"Mandarin plentiful, Malay scarce.")

        t = _step(2, "import into the store with Ray Data (decode, resample to 16 kHz, FLAC, normalise text)")
        metas = prepare([ImportSpec.from_dict(s) for s in specs], str(store), PrepareOptions())
        print(format_summary(metas))
        print(f"-> Parquet shards in {store}/data/<split>/<language>/<dataset>/ ({time.time() - t:.0f} s)")

        _step(3, "what the store holds (polyglot-lion stats)")
        print(format_stats(store_stats(str(store), "train")))

        _step(4, "balance the training split: the paper's two-stage upsampling")
        meta = read_metadata(str(store), "train", columns=["id", "language", "dataset", "duration_s"])
        corpus, durations = corpus_from_table(meta)
        natural = sum(len(v) for v in corpus.values())
        plan = make_plan(corpus, "two-stage", args.seed)
        summary = write_plan(plan, durations, meta, str(plan_dir), extra={"store": str(store), "split": "train"})
        png = plot_balance(str(plan_dir / "summary.json"), str(out / "balance.png"))
        print(f"{'language':<9}{'natural':>9}{'after stage 1':>15}{'after stage 2':>15}{'share':>8}")
        for lang, v in summary["languages"].items():
            nat = sum(len(ids) for (lang2, _), ids in corpus.items() if lang2 == lang)
            print(f"{lang:<9}{nat:>9}{v['stage1']:>15}{v['utterances']:>15}"
                  f"{100 * v['utterances'] / summary['total']:>7.1f}%")
        print(f"{natural} utterances -> {summary['total']} references (no audio copied); chart: {png}")

        cfg = load_config("jobs/configs/qwen3_asr/tiny_cpu.yaml" if Path("jobs/configs/qwen3_asr/tiny_cpu.yaml")
                          .exists() else None, [
            f"data.store={store}", f"data.plan={plan_dir}", f"run.output_dir={out}/runs", "run.name=demo",
            f"run.seed={args.seed}", f"tracking.uri={db}", "tracking.registered_model=polyglot-lion-tiny",
            f"train.max_steps={args.train_steps}", f"train.checkpoint_every={max(50, args.train_steps // 4)}",
            # at each checkpoint the dev split is transcribed and scored; the best checkpoint is the run's model
            f"train.dev_eval_every={max(50, args.train_steps // 4)}", "train.select_by=dev_capped_error_rate",
            "train.log_every=25", "train.dev_every=250", "train.warmup_ratio=0.05", "train.lr=0.001",
            "train.betas=[0.9, 0.98]", "data.max_frames_per_batch=8000", "data.max_batch_size=16",
            "scaling.num_workers=1", "scaling.cpus_per_worker=1"])

        t = _step(5, "evaluate the untrained tiny Qwen3-ASR on the 12 synthetic test sets (before)")
        base = prepare_base_model(cfg, out / "runs" / "demo")  # the same weights training starts from
        before = evaluate(base, str(store), out_dir=str(out / "eval_before"), tracking_uri=db,
                          label="tiny, untrained", log_to_mlflow=False)
        print(f"average error rate {before['average']:.1f}% ({time.time() - t:.0f} s)")

        t = _step(6, f"train the tiny model with Ray Train: {args.train_steps} steps, two-stage plan, "
                     f"language-agnostic targets")
        result = train(cfg, progress=True)  # a bar from MLflow: this quiet driver hides the worker's lines
        mv = result["model_version"]
        print(f"trained in {time.time() - t:.0f} s; final loss {result['metrics'].get('loss', float('nan')):.3f}; "
              f"MLflow run {result['mlflow_run_id']}; registered {mv['name']} version {mv['version']}")
        print(f"the registered model is the checkpoint of step {result['model_step']}, the lowest dev error rate of "
              f"those kept (dev error rate per checkpoint, capped at 100%: "
              f"{_dev_rates(db, result['mlflow_run_id'])})")

        _step(7, "promote the new version in the registry")
        prom = promote(mv["name"], str(mv["version"]), "champion", db)
        uri = f"models:/{prom['name']}@champion"
        print(f"{uri} -> version {prom['version']}")

        t = _step(8, f"evaluate {uri} (after) and compare")
        after = evaluate(uri, str(store), out_dir=str(out / "eval_after"), tracking_uri=db)
        print(_before_after(before, after))
        print(f"\nfull table beside the paper's published rows: {out}/eval_after/results.md "
              f"(chart results.png); scores are tagged on the model version ({time.time() - t:.0f} s)")

        t = _step(9, "bulk-transcribe a folder with Ray Data (one row per file, errors counted)")
        inbox = out / "inbox"
        for wav in sorted((corpus_dir).rglob("*.wav"))[:40]:
            dest = inbox / wav.parent.name / wav.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(wav, dest)
        (inbox / "broken.wav").write_bytes(b"RIFF not really a wav")
        (inbox / "notes.txt").write_text("not audio")
        bulk = transcribe_bulk(uri, [str(inbox)], str(out / "transcripts"), BulkOptions(tracking_uri=db))
        print(json.dumps({k: bulk[k] for k in ("inputs", "outputs", "transcribed", "errors")}))
        first = (out / "transcripts" / "transcripts.jsonl").read_text().splitlines()[0]
        print(f"e.g. {first}\n-> {out}/transcripts/transcripts.parquet and .jsonl ({time.time() - t:.0f} s)")

        t = _step(10, "serve it over HTTP (Ray Serve, OpenAI-compatible) and send one request")
        _serve_once(uri, db, args.port, corpus_dir)
    finally:
        if started:
            ray.shutdown()
    print(f"\n=== done in {time.time() - t0:.0f} s ===")
    print(f"""What the model is: a 2.6M-parameter Qwen3-ASR trained from scratch for minutes on synthetic espeak-ng
speech (random sentences from ~75 words per language): it shows the platform working end to end and the
model learning to listen, not a recogniser for real audio. WER on random word sequences is harsh (no
language model can guess the next word): read it beside the exact-match column.
  corpus, store, plan     {corpus_dir}, {store}, {plan_dir}
  balance chart           {out}/balance.png
  evaluations             {out}/eval_before/, {out}/eval_after/ (results.md, results.png, results.json)
  checkpoints             {out}/runs/demo/
  bulk transcripts        {out}/transcripts/
  MLflow                  mlflow ui --backend-store-uri {db} --host 127.0.0.1   (or: make mlflow-ui)
  registry                polyglot-lion models --tracking-uri {db} show polyglot-lion-tiny
  serve it yourself       MLFLOW_TRACKING_URI={db} polyglot-lion serve --model {uri}""")
    return 0


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
