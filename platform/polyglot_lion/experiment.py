"""The paper's two claims in miniature, run entirely through the platform: balanced vs natural sampling, and
language-agnostic vs tagged targets.

    python jobs/experiments/balance_ablation.py --out runs/ablation --budget 70m        # CPU miniature
    python jobs/experiments/balance_ablation.py --out runs/ablation-gpu --preset small --budget 6000,3000
    python jobs/experiments/balance_ablation.py --out /tmp/abl --smoke                          # the test suite

1. a skewed synthetic corpus shaped like the paper's Table 1 (dev and test sets per dataset) -> the store;
2. a "base model" like Qwen3-ASR's situation: the from-scratch model trained on English and Mandarin only,
   registered in MLflow;
3. fine-tune that base for the same steps and seed under natural, temperature and two-stage sampling, and a
   two-stage run with tagged targets; natural vs two-stage for every seed;
4. evaluate every model on every test set with the platform's evaluator; all runs in one MLflow experiment;
5. results.json, results.md (per benchmark and per language, the paper's average rule) and results.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray

from .config import load_config
from .data.balance import corpus_from_table, make_plan, write_plan
from .data.prepare import ImportSpec, PrepareOptions, prepare
from .data.store import read_metadata
from .data.synth import synthesize_corpus
from .evaluation.evaluate import evaluate
from .runtime import init_ray
from .train.run import train

EXPERIMENT = "balance-ablation"
CONFIG = "jobs/configs/qwen3_asr/tiny_cpu.yaml"


@dataclass
class AblationOptions:
    out: str
    seeds: tuple[int, ...] = (0, 1)
    preset: str = "tiny"
    base_steps: int | None = None  # None: from budget_minutes
    ft_steps: int | None = None
    budget_minutes: float = 70.0
    base_share: float = 0.25  # of the training steps the budget buys, the base model's share
    ft_lr: float = 1e-3  # peak lr of the fine-tunes (the from-scratch rate: Tamil and Malay are new to the base)
    train_utterances: int = 4800
    eval_utterances: int = 20
    max_eval_utterances: int | None = None
    smoke: bool = False
    tracking_uri: str | None = None
    torch_threads: int = 2
    base_only: bool = False  # train and evaluate the base model only (the demo's shipped base: demo_base.py)
    base_languages: tuple[str, ...] = ("en", "zh")  # what the base model is trained on (natural sampling)
    runs: list = field(default_factory=list)

    def planned_runs(self) -> list[dict]:
        if self.base_only:
            return []
        runs = []
        for seed in self.seeds:
            for strategy in ("natural", "temperature", "two-stage"):
                if strategy == "temperature" and seed != self.seeds[0]:
                    continue  # natural vs two-stage on every seed; temperature and tagged once
                runs.append({"name": f"{strategy}-agnostic-s{seed}", "strategy": strategy, "mode": "agnostic",
                             "seed": seed})
        runs.append({"name": f"two-stage-tagged-s{self.seeds[0]}", "strategy": "two-stage", "mode": "tagged",
                     "seed": self.seeds[0]})
        return runs


def _overrides(opts: AblationOptions, store: str, plan: str, name: str, seed: int, steps: int, db: str,
               source: str = "tiny", mode: str = "agnostic", lr: float = 1e-3) -> list[str]:
    every = max(1, steps // 10)
    # a dev loss mid-way and at the end (each costs a few seconds of a short job)
    dev_every = 0 if opts.smoke else max(1, steps // 2)
    return [f"data.store={store}", f"data.plan={plan}", f"run.output_dir={opts.out}/runs", f"run.name={name}",
            f"run.seed={seed}", f"tracking.uri={db}", f"tracking.experiment={EXPERIMENT}",
            "tracking.registered_model=ablation-tiny", f"model.source={source}", f"model.tiny_preset={opts.preset}",
            f"data.target_mode={mode}", f"train.max_steps={steps}", f"train.log_every={every}",
            f"train.dev_every={dev_every}", f"train.checkpoint_every={steps}",
            f"train.lr={lr}", "train.warmup_ratio=0.05", "train.betas=[0.9, 0.98]", "data.max_frames_per_batch=8000",
            "data.max_batch_size=16", "scaling.num_workers=1", "scaling.cpus_per_worker=1",
            f"scaling.torch_threads={opts.torch_threads}", "data.dev_max_utterances=48"] + (
        # smoke: the training loop in the driver (Train's local mode) and featurising tasks whose processes are
        # reused from job to job, so eight short jobs do not pay eight Ray Train and actor start-ups
        ["scaling.num_workers=0", "data.featurize_actors=0"] if opts.smoke else [])


def _calibrate(opts: AblationOptions, store: str, plan: str, db: str) -> tuple[float, float]:
    """(optimizer steps per second once running, seconds a train() call costs besides its steps) on this machine:
    a short run; the rate is the median over its log windows after the first (start-up, buffer fill)."""
    import statistics

    from mlflow.tracking import MlflowClient

    steps = 200
    t = time.time()
    out = train(load_config(CONFIG, _overrides(opts, store, plan, "calibration", 0, steps, db) + ["train.log_every=20"]))
    wall = time.time() - t
    history = MlflowClient(tracking_uri=db).get_metric_history(out["mlflow_run_id"], "steps_per_s")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)][1:]
    rate = statistics.median(rates) if rates else steps / wall
    return rate, max(0.0, wall - steps / rate)


def run_ablation(opts: AblationOptions) -> dict:
    out = Path(opts.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = opts.tracking_uri or f"sqlite:///{out}/mlflow.db"
    store, t0 = str(out / "store"), time.time()
    if opts.smoke:
        opts.train_utterances, opts.eval_utterances, opts.max_eval_utterances = 48, 1, 1
        opts.base_steps, opts.ft_steps = opts.base_steps or 4, opts.ft_steps or 3
    timings: dict[str, float] = {}
    steps_given = opts.base_steps is not None and opts.ft_steps is not None
    started = init_ray(quiet=True)
    try:
        # 1. corpus and store (reused when present: the corpus is seeded and identical)
        if not (out / "store" / "data").exists():
            specs = synthesize_corpus(str(out / "corpus"), opts.train_utterances, opts.eval_utterances, seed=0,
                                      progress=not opts.smoke)
            prepare([ImportSpec.from_dict(s) for s in specs], store, PrepareOptions())
        timings["corpus_s"] = time.time() - t0
        meta = read_metadata(store, "train", columns=["id", "language", "dataset", "duration_s"])
        corpus, durations = corpus_from_table(meta)

        # 2. plans: the base model's (en + zh only, natural) and one per strategy and seed
        plans = {}
        base_corpus = {k: v for k, v in corpus.items() if k[0] in opts.base_languages}
        plans["base"] = str(out / "plans" / "base")
        write_plan(make_plan(base_corpus, "natural", 0), durations, meta, plans["base"])
        for r in opts.planned_runs():
            key = f"{r['strategy']}-s{r['seed']}"
            if key not in plans:
                plans[key] = str(out / "plans" / key)
                write_plan(make_plan(corpus, r["strategy"], r["seed"]), durations, meta, plans[key])

        # 3. budget -> steps
        if opts.base_steps is None or opts.ft_steps is None:
            if opts.base_only:
                raise ValueError("base_only needs base_steps (the calibration times the fine-tunes' plan)")
            t = time.time()
            rate, overhead = _calibrate(opts, store, plans["two-stage-s0"], db)
            timings["calibration_s"] = time.time() - t
            n = len(opts.planned_runs())
            # what is left for steps: the budget less what is spent, each train() call's fixed cost, the
            # evaluations (~5 s a model here) and a margin. Over a long run steps go ~0.8x the calibrated rate
            # (measured on the fine-tunes, 2026-11-26): each epoch restarts the input pipeline (~15 s here).
            fixed = timings["calibration_s"] + timings["corpus_s"] + (n + 1) * (overhead + 15)
            train_s = max(60.0, opts.budget_minutes * 60 * 0.93 - fixed)
            total = rate * 0.8 * train_s
            opts.base_steps = opts.base_steps or max(10, int(total * opts.base_share))
            opts.ft_steps = opts.ft_steps or max(10, int(total * (1 - opts.base_share) / n))
            timings.update(calibrated_steps_per_s=rate, train_call_overhead_s=overhead)
            print(f"calibrated {rate:.2f} steps/s, {overhead:.0f} s per training job -> base {opts.base_steps} "
                  f"steps, {n} fine-tunes of {opts.ft_steps} steps", flush=True)

        # 4. base model: English and Mandarin only
        t = time.time()
        base_name = "base-" + "-".join(opts.base_languages)
        base = train(load_config(CONFIG, _overrides(opts, store, plans["base"], base_name, 0, opts.base_steps, db)))
        timings["base_s"] = time.time() - t
        runs = [{"name": base_name, "strategy": f"base ({'+'.join(opts.base_languages)})", "mode": "agnostic", "seed": 0,
                 "checkpoint": base["checkpoint"], "model_version": base["model_version"],
                 "mlflow_run_id": base["mlflow_run_id"]}]

        # 5. fine-tune the base under each strategy, same steps and seed
        for r in opts.planned_runs():
            t = time.time()
            res = train(load_config(CONFIG, _overrides(
                opts, store, plans[f"{r['strategy']}-s{r['seed']}"], r["name"], r["seed"], opts.ft_steps, db,
                source=base["checkpoint"], mode=r["mode"], lr=opts.ft_lr)))
            runs.append({**r, "checkpoint": res["checkpoint"], "model_version": res["model_version"],
                         "mlflow_run_id": res["mlflow_run_id"], "train_s": time.time() - t})
            print(f"trained {r['name']} in {time.time() - t:.0f} s", flush=True)

        # 6. evaluate everything on every test set
        for r in runs:
            t = time.time()
            res = evaluate(r["checkpoint"], store, out_dir=str(out / "eval" / r["name"]), tracking_uri=db,
                           max_utterances=opts.max_eval_utterances, label=r["name"], progress=False,
                           experiment=EXPERIMENT)
            r["eval"] = {"benchmarks": {d: {k: e[k] for k in ("language", "metric", "error_rate", "capped_error_rate",
                                                             "exact_match", "utterances")}
                                        for d, e in res["benchmarks"].items()},
                         "languages": res["languages"], "average": res["average"],
                         "average_capped": res["average_capped"], "exact_match": res["exact_match"]}
            r["eval_s"] = time.time() - t
    finally:
        if started:
            ray.shutdown()
    result = {"experiment": EXPERIMENT, "tracking_uri": db, "preset": opts.preset, "seeds": list(opts.seeds),
              "base_steps": opts.base_steps, "ft_steps": opts.ft_steps, "smoke": opts.smoke,
              "train_utterances": opts.train_utterances, "eval_utterances_per_set": opts.eval_utterances,
              "timings": timings, "wall_minutes": (time.time() - t0) / 60, "ft_lr": opts.ft_lr,
              "budget_minutes": None if steps_given else opts.budget_minutes,
              "runs": [{k: v for k, v in r.items() if k != "checkpoint"} | {"checkpoint": str(r["checkpoint"])}
                       for r in runs]}
    result["summary"] = summarise(result)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(results_markdown(result))
    plot_ablation(result, str(out / "results.png"))
    _log_summary(result, out, db)
    return result


def capped_language_means(run: dict) -> dict[str, float]:
    """A run's capped error rate per language: the mean over its test sets of that language."""
    by: dict[str, list[float]] = {}
    for e in run["eval"]["benchmarks"].values():
        by.setdefault(e["language"], []).append(e["capped_error_rate"])
    return {k: sum(v) / len(v) for k, v in sorted(by.items())}


def summarise(result: dict) -> dict:
    """Per strategy (mean over seeds): capped error rate per language and overall; and the two claims. Pure."""
    groups: dict[str, list[dict]] = {}
    for r in result["runs"]:
        groups.setdefault(f"{r['strategy']} / {r['mode']}", []).append(r)
    table = {}
    for g, rs in groups.items():
        langs = [capped_language_means(r) for r in rs]
        means = {k: sum(d[k] for d in langs) / len(langs) for k in langs[0]}
        table[g] = {"seeds": [r["seed"] for r in rs], "languages": means,
                    "average_capped": sum(r["eval"]["average_capped"] for r in rs) / len(rs),
                    "exact_match": sum(r["eval"]["exact_match"] for r in rs) / len(rs)}
    claims = {}
    nat, two = table.get("natural / agnostic"), table.get("two-stage / agnostic")
    if nat and two:
        claims["balanced_vs_natural"] = {
            "languages": {k: two["languages"][k] - nat["languages"][k] for k in nat["languages"]},
            "average": two["average_capped"] - nat["average_capped"],
            "note": "two-stage minus natural, capped error rate points; negative = balancing helped"}
    tag = table.get("two-stage / tagged")
    if tag and two:
        same_seed = [r for r in result["runs"] if r["strategy"] == "two-stage" and r["mode"] == "agnostic"
                     and r["seed"] == tag["seeds"][0]]
        ref = capped_language_means(same_seed[0]) if same_seed else two["languages"]
        claims["agnostic_vs_tagged"] = {
            "languages": {k: ref[k] - tag["languages"][k] for k in ref},
            "note": "agnostic minus tagged (same seed), capped error rate points; negative = agnostic helped"}
    return {"strategies": table, "claims": claims}


def results_markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"# Balance ablation ({'SMOKE - numbers meaningless' if result['smoke'] else result['preset']} model)",
             "",
             f"Base: {result['base_steps']} steps on English + Mandarin only; each fine-tune: {result['ft_steps']} "
             f"steps from that base, lr {result.get('ft_lr', 5e-4):g}, seeds {result['seeds']}. {result['train_utterances']} synthetic "
             f"train utterances; {result['eval_utterances_per_set']} test utterances per set. Error rates are "
             f"WER (en/ta/ms) or CER (zh), capped at 100% per set (untrained outputs loop); wall "
             f"{result['wall_minutes']:.0f} min" + (f" (budget {result['budget_minutes']:.0f} min)"
                                                     if result.get("budget_minutes") else "") + ".", "",
             "## Per language (mean over seeds)", "",
             "| strategy / targets | seeds | en | zh | ta | ms | avg (capped) | exact match |",
             "|---|---|---|---|---|---|---|---|"]
    for g, v in s["strategies"].items():
        lv = v["languages"]
        lines.append(f"| {g} | {','.join(map(str, v['seeds']))} | " + " | ".join(
            f"{lv.get(k, float('nan')):.1f}" for k in ("en", "zh", "ta", "ms"))
            + f" | {v['average_capped']:.1f} | {v['exact_match']:.1f}% |")
    lines += ["", "## Per benchmark (each run)", ""]
    datasets = list(result["runs"][0]["eval"]["benchmarks"])
    lines.append("| run | " + " | ".join(datasets) + " | avg (paper rule) |")
    lines.append("|---|" + "---|" * (len(datasets) + 1))
    for r in result["runs"]:
        b = r["eval"]["benchmarks"]
        avg = r["eval"]["average"]
        lines.append(f"| {r['name']} | " + " | ".join(f"{b[d]['error_rate']:.1f}" for d in datasets)
                     + f" | {'' if avg is None else f'{avg:.1f}'} |")
    lines += ["", "## The claims, as measured", ""]
    for k, c in s["claims"].items():
        lines.append(f"- **{k}** ({c['note']}): " + ", ".join(f"{lang} {d:+.1f}" for lang, d in c["languages"].items())
                     + (f"; average {c['average']:+.1f}" if "average" in c else ""))
    return "\n".join(lines) + "\n"


def plot_ablation(result: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    strategies = result["summary"]["strategies"]
    langs = ["en", "zh", "ta", "ms"]
    x = np.arange(len(langs))
    width = 0.8 / max(1, len(strategies))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (g, v) in enumerate(strategies.items()):
        ax.bar(x + k * width - 0.4 + width / 2, [v["languages"].get(lang, 0) for lang in langs], width, label=g)
    ax.set_xticks(x, ["English (WER)", "Mandarin (CER)", "Tamil (WER)", "Malay (WER)"])
    ax.set_ylabel("error rate %, capped at 100 (mean over seeds)")
    ax.set_title(f"Sampling strategy and targets, {result['preset']} model, seeds {result['seeds']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_summary(result: dict, out: Path, db: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=db)
    exp = client.get_experiment_by_name(EXPERIMENT)
    run = client.create_run(exp.experiment_id, run_name="ablation-summary", tags={"kind": "summary"})
    for name in ("results.json", "results.md", "results.png"):
        client.log_artifact(run.info.run_id, str(out / name))
    for g, v in result["summary"]["strategies"].items():
        key = g.replace(" / ", "_").replace(" ", "_").replace("(", "").replace(")", "").replace("+", "")
        client.log_metric(run.info.run_id, f"{key}.average_capped", v["average_capped"])
    client.set_terminated(run.info.run_id)
