"""Evaluate a model on the store's test sets, beside the paper's published rows.

    result = evaluate("models:/polyglot-lion-tiny@champion", store="store", out_dir="eval_out")
    result = evaluate(..., store="s3://bucket/store", out_dir="s3://bucket/eval/tiny")   # locations in a bucket

Writes OUT/results.json (per benchmark: metric, error rate, utterances, s/sample, RTF; per-language means; the
overall average leaving out results above 200%, the rule the paper states), OUT/results.md (our row under the
published rows, the paper's twelve columns), OUT/results.png and OUT/hypotheses.jsonl; logs all of it to an
MLflow run and, for a registered model, tags the model version with its scores (``eval.<split>.<dataset>``).
Datasets outside the paper's twelve are scored and reported too, in their own columns.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from ..data.audio import decode_flac
from ..data.store import list_partitions
from ..inference.source import tracking_uri as default_tracking
from ..inference.transcriber import Transcriber
from ..runtime import progress_bar
from ..storage import resolve
from .benchmarks import BENCHMARKS, COLUMNS, PUBLISHED, SOURCE, benchmark_for_dataset
from .scoring import average_excluding, capped_error_rate, exact_match_rate, language_id_accuracy, score

EVAL_EXPERIMENT = "polyglot-lion-eval"
SHOWN_PUBLISHED = ("Whisper-large-v3-turbo", "Qwen3-ASR-0.6B", "Qwen3-ASR-1.7B", "MERaLiON-2-10B-ASR",
                   "Polyglot-Lion-0.6B", "Polyglot-Lion-1.7B")


def _select(partitions, benchmarks: list[str] | None):
    if not benchmarks:
        return partitions
    wanted = set()
    for name in benchmarks:
        b = benchmark_for_dataset(name)
        wanted.add(b.key if b else name)
    chosen = [p for p in partitions if p.dataset in wanted or
              (benchmark_for_dataset(p.dataset) and benchmark_for_dataset(p.dataset).key in wanted)]
    found = {p.dataset for p in chosen} | {benchmark_for_dataset(p.dataset).key for p in chosen
                                           if benchmark_for_dataset(p.dataset)}
    missing = sorted(wanted - found)
    if missing:
        raise ValueError(f"benchmarks {missing} are not in the store; it has {sorted(p.dataset for p in partitions)}")
    return chosen


def _read_partition(p, limit: int | None) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for f in p.files:
        rows += pq.read_table(f, columns=["id", "audio", "text", "language", "duration_s"],
                              filesystem=p.fs).to_pylist()
        if limit and len(rows) >= limit:
            break
    rows.sort(key=lambda r: r["id"])
    return rows[:limit] if limit else rows


def evaluate(model_uri: str, store: str, split: str = "test", benchmarks: list[str] | None = None,
             out_dir: str | None = None, tracking_uri: str | None = None, max_utterances: int | None = None,
             batch_size: int = 16, label: str | None = None, log_to_mlflow: bool = True, transcriber=None,
             progress: bool = True, experiment: str = EVAL_EXPERIMENT) -> dict:

    parts = _select(list_partitions(store, split), benchmarks)
    if not parts:
        raise FileNotFoundError(f"store {store!r} has no {split!r} split to evaluate on")
    tr = transcriber or Transcriber.load(model_uri, tracking_uri=tracking_uri, batch_size=batch_size)
    info = tr.describe()
    label = label or (f"{info['name']} v{info['version']}" if info.get("name") else model_uri)
    results, hyp_lines = {}, []
    bar = progress_bar(progress, total=len(parts), desc="evaluate", unit="set") if progress else None
    skipped: dict[str, list[dict]] = {}  # test set -> utterances whose audio does not decode (not scored)
    for p in parts:
        rows, audios = [], []
        for r in _read_partition(p, max_utterances):
            try:
                audios.append(decode_flac(r["audio"]))
                rows.append(r)
            except Exception as e:  # noqa: BLE001 - one damaged utterance must not end the evaluation
                skipped.setdefault(p.dataset, []).append(
                    {"id": r["id"], "reason": f"unreadable_audio: {type(e).__name__}: {str(e)[:120]}"})
        if p.dataset in skipped:
            print(f"evaluate: {p.dataset}: {len(skipped[p.dataset])} utterance(s) skipped, audio does not decode "
                  f"(first: {skipped[p.dataset][0]['id']}: {skipped[p.dataset][0]['reason']})", file=sys.stderr)
        if not rows:  # nothing left to score: listed under "skipped", not in the table
            if bar:
                bar.update()
            continue
        t0 = time.perf_counter()
        outs = tr.transcribe(audios)
        wall = time.perf_counter() - t0
        refs, hyps = [r["text"] for r in rows], [o.text for o in outs]
        s = score(refs, hyps, p.language)
        audio_s = sum(len(a) for a in audios) / 16000
        bench = benchmark_for_dataset(p.dataset)
        entry = {**s.to_dict(), "dataset": p.dataset, "language": p.language,
                 "benchmark": bench.column if bench else None,
                 "capped_error_rate": capped_error_rate(s.error_rate),
                 "exact_match": exact_match_rate(refs, hyps, p.language),
                 "s_per_sample": wall / max(1, len(rows)), "rtf": wall / audio_s if audio_s else None,
                 "audio_hours": audio_s / 3600, "skipped_utterances": len(skipped.get(p.dataset, []))}
        rule = p.meta.get("split_rule")  # a test split the recipe made (NSC, SLR65, Mesolitica): say which
        if rule:
            entry["split_rule"] = {k: rule[k] for k in ("rule", "seed", "test_utterances_target") if k in rule}
        predicted = [o.language for o in outs]
        if any(predicted):
            entry["language_id_accuracy"] = language_id_accuracy([p.language] * len(rows), predicted).accuracy
        results[p.dataset] = entry
        for r, o in zip(rows, outs):
            hyp_lines.append({"id": r["id"], "dataset": p.dataset, "language": p.language, "ref": r["text"],
                              "hyp": o.text, "hyp_language": o.language})
        if bar:
            bar.set_postfix_str(f"{p.dataset} {s.metric.upper()} {s.error_rate:.1f}%")
            bar.update()
    if bar:
        bar.close()
    if not results:
        raise ValueError(f"evaluate: no utterance of {split!r} in {store!r} could be decoded "
                         f"({sum(len(v) for v in skipped.values())} skipped in {sorted(skipped)})")
    by_lang: dict[str, list[float]] = {}
    for e in results.values():
        by_lang.setdefault(e["language"], []).append(e["error_rate"])
    rates = [e["error_rate"] for e in results.values()]
    out = {
        "model": {**info, "label": label, "uri": model_uri}, "store": str(store), "split": split,
        "benchmarks": results,
        "languages": {k: average_excluding(v) for k, v in sorted(by_lang.items())},
        "average": average_excluding(rates),
        "average_capped": sum(capped_error_rate(r) for r in rates) / len(rates),
        "excluded_over_200": sorted(d for d, e in results.items() if e["error_rate"] > 200),
        "exact_match": sum(e["exact_match"] * e["utterances"] for e in results.values())
        / max(1, sum(e["utterances"] for e in results.values())),
        "published_source": SOURCE,
        "skipped": {d: {"utterances": len(v), "examples": v[:5]} for d, v in skipped.items()},
    }
    # written in a temporary folder (matplotlib and MLflow's artifact upload want one), then each file copied whole
    # to OUT, which may be a bucket
    with tempfile.TemporaryDirectory(prefix="polyglot-lion-eval-") as tmp:
        if out_dir:
            d = Path(tmp)
            (d / "results.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))
            (d / "results.md").write_text(markdown_table(out))
            plot_results(out, str(d / "results.png"))
            with open(d / "hypotheses.jsonl", "w", encoding="utf-8") as f:
                for line in hyp_lines:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            dest = resolve(out_dir)
            for file in sorted(d.iterdir()):
                dest.join(file.name).write_bytes(file.read_bytes())
            out["files"] = {k: str(dest.join(f"results.{k}")) for k in ("json", "md", "png")}
        if log_to_mlflow:
            out["mlflow"] = log_evaluation(out, default_tracking(tracking_uri), tmp if out_dir else None, experiment)
    return out


def dev_metrics(res: dict, prefix: str = "dev_") -> dict:
    """Metrics for a training run's curves from an ``evaluate`` result: the mean over the sets of each set's error
    rate capped at 100% (``capped_error_rate``; early in training looping output reaches several hundred per
    cent and would flatten every curve), the same per language (``..._en``, ``..._zh``, ...), the exact-match share,
    and how many utterances were scored and how many skipped (audio that does not decode). Pure."""
    sets = res["benchmarks"].values()
    by_lang: dict[str, list[float]] = {}
    for e in sets:
        by_lang.setdefault(e["language"], []).append(e["capped_error_rate"])
    out = {f"{prefix}capped_error_rate": res["average_capped"], f"{prefix}exact_match": res["exact_match"],
           f"{prefix}eval_utterances": sum(e["utterances"] for e in sets)}
    out.update({f"{prefix}capped_error_rate_{lang}": sum(v) / len(v) for lang, v in sorted(by_lang.items())})
    skipped = sum(s["utterances"] for s in res.get("skipped", {}).values())
    if skipped:
        out[f"{prefix}eval_skipped_utterances"] = skipped
    return out


def _fmt(v) -> str:
    return "" if v is None else f"{v:.2f}"


def markdown_table(res: dict) -> str:
    """Our row under the published rows, in the paper's column order, then extra datasets and per language."""
    ours = {e["benchmark"]: e["error_rate"] for e in res["benchmarks"].values() if e["benchmark"]}
    extra = sorted(d for d, e in res["benchmarks"].items() if not e["benchmark"])
    cols = [c for c in COLUMNS] + extra
    head = "| model | " + " | ".join(cols) + " | Avg |\n|---|" + "---|" * (len(cols) + 1) + "\n"
    lines = []
    for row in PUBLISHED:
        if row.model in SHOWN_PUBLISHED:
            vals = row.by_column()
            lines.append(f"| {row.model} (published) | " + " | ".join(_fmt(vals.get(c)) for c in COLUMNS)
                         + " |" * len(extra) + f" | {_fmt(row.avg)} |")
    ours_vals = [_fmt(ours.get(c)) for c in COLUMNS] + [_fmt(res["benchmarks"][d]["error_rate"]) for d in extra]
    lines.append(f"| **{res['model']['label']}** | " + " | ".join(ours_vals) + f" | **{_fmt(res['average'])}** |")
    text = (f"Error rates (%), lower is better: WER for en/ta/ms, CER for zh. Avg leaves out results above 200%.\n"
            f"Model: {res['model']['label']} on {res['store']} ({res['split']}). Published rows: {SOURCE}.\n\n"
            + head + "\n".join(lines) + "\n\n")
    text += ("| dataset | language | metric | utterances | error rate | capped | exact match | s/sample | RTF |\n"
             "|---|---|---|---|---|---|---|---|---|\n")
    for d, e in res["benchmarks"].items():
        text += (f"| {d} | {e['language']} | {e['metric'].upper()} | {e['utterances']} | {e['error_rate']:.2f} | "
                 f"{e['capped_error_rate']:.2f} | {e['exact_match']:.1f} | {e['s_per_sample']:.4f} | "
                 f"{_fmt(e['rtf'])} |\n")
    text += "\n| language | mean error rate |\n|---|---|\n" + "".join(
        f"| {k} | {_fmt(v)} |\n" for k, v in res["languages"].items())
    for d, sk in res.get("skipped", {}).items():
        text += (f"\n{d}: {sk['utterances']} utterance(s) not scored, their audio does not decode "
                 f"(e.g. {sk['examples'][0]['id']}: {sk['examples'][0]['reason']})"
                 + ("; the whole set, so it is not in the tables" if d not in res["benchmarks"] else "") + "\n")
    return text


def plot_results(res: dict, path: str, cap: float = 150.0) -> str:
    """Bars per test set: this model beside the published Qwen3-ASR-0.6B and Polyglot-Lion-0.6B (capped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(res["benchmarks"])
    series = {res["model"]["label"]: [res["benchmarks"][d]["error_rate"] for d in names]}
    for model in ("Qwen3-ASR-0.6B", "Polyglot-Lion-0.6B"):
        row = next(r for r in PUBLISHED if r.model == model).by_column()
        series[f"{model} (published)"] = [row.get(res["benchmarks"][d]["benchmark"]) for d in names]
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    for k, (label, vals) in enumerate(series.items()):
        ys = [min(cap, v) if v is not None else 0 for v in vals]
        ax.bar(x + k * width - 0.4 + width / 2, ys, width, label=label)
    ax.set_xticks(x, [f"{d}\n({res['benchmarks'][d]['metric'].upper()})" for d in names], fontsize=7)
    ax.set_ylabel(f"error rate % (capped at {cap:.0f})")
    ax.set_title(f"{res['model']['label']} on {res['split']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_evaluation(res: dict, tracking: str, out_dir: str | None, experiment: str = EVAL_EXPERIMENT) -> dict:
    """An MLflow run in the eval experiment; scores also tagged onto the registered model version."""
    from mlflow.tracking import MlflowClient

    from ..tracking import run_status  # MLflow and the training side: only a logged evaluation needs them

    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    m = res["model"]
    tags = {"model_uri": m["uri"], "split": res["split"], "store": res["store"]}
    if m.get("name"):
        tags.update({"model_name": m["name"], "model_version": str(m["version"])})
    run = client.create_run(exp_id, run_name=f"eval {m['label']} {res['split']}", tags=tags)
    rid = run.info.run_id
    with run_status(tracking, rid):  # ends FINISHED, or FAILED/KILLED with the error
        for d, e in res["benchmarks"].items():
            client.log_metric(rid, f"{d}.{e['metric']}", e["error_rate"])
            client.log_metric(rid, f"{d}.exact_match", e["exact_match"])
            client.log_metric(rid, f"{d}.s_per_sample", e["s_per_sample"])
        for lang, v in res["languages"].items():
            if v is not None:
                client.log_metric(rid, f"lang.{lang}", v)
        if res["average"] is not None:
            client.log_metric(rid, "average", res["average"])
        client.log_metric(rid, "average_capped", res["average_capped"])
        for d, sk in res.get("skipped", {}).items():
            client.log_metric(rid, f"{d}.skipped_utterances", sk["utterances"])
        if out_dir:
            client.log_artifacts(rid, out_dir, "evaluation")
    if m.get("name") and m.get("version"):
        prefix = f"eval.{res['split']}"
        for d, e in res["benchmarks"].items():
            client.set_model_version_tag(m["name"], m["version"], f"{prefix}.{d}", f"{e['error_rate']:.2f}")
        client.set_model_version_tag(m["name"], m["version"], f"{prefix}.average", _fmt(res["average"]))
        client.set_model_version_tag(m["name"], m["version"], f"{prefix}.run_id", rid)
    return {"run_id": rid, "experiment": experiment, "tracking_uri": tracking}


__all__ = ["evaluate", "markdown_table", "plot_results", "log_evaluation", "BENCHMARKS"]
