"""Balancing the training mix: the paper's two-stage upsampling, temperature sampling, or nothing.

    polyglot-lion balance --store store/ --split train --strategy two-stage --seed 0 --out plans/two-stage

Pure, seeded functions compute a plan (which utterance ids, how many times each); the plan is written as
Parquet of references (``index, id, language, dataset, repeat, duration_s``), never copies of the audio,
plus ``summary.json``. ``read_balanced`` is the Ray Data adapter that streams the store through a plan.

Two-stage (paper, Section 4): within a language l with datasets D_l, N*_l = max |d|; every dataset is
replicated ceil(N*_l/|d|) times and randomly subsampled to exactly N*_l (stage 1). Then M = max_l |D_l|N*_l
and every language pool is replicated ceil(M/|pool|) times and subsampled to exactly M (stage 2): each
language is exactly 25% of 4M utterances. Same seed, same plan, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage import resolve
from .store import list_partitions, read_metadata, store_fingerprint, write_shard

STRATEGIES = ("two-stage", "temperature", "natural")
PLAN_FILE = "plan.parquet"
SUMMARY_FILE = "summary.json"
PLAN_SCHEMA = pa.schema([("index", pa.int64()), ("id", pa.string()), ("language", pa.string()),
                         ("dataset", pa.string()), ("repeat", pa.int32()), ("duration_s", pa.float64())])

# {(language, dataset): sorted utterance ids}
Corpus = dict[tuple[str, str], list[str]]


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator for one (seed, stage, language, dataset): independent of dict order and Python's hash."""
    words = [int.from_bytes(hashlib.sha256(n.encode()).digest()[:4], "little") for n in names]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def replicate_subsample(n_items: int, target: int, rng: np.random.Generator) -> np.ndarray:
    """Replicate ``range(n_items)`` ceil(target/n_items) times, then subsample exactly ``target`` (no replacement)."""
    if n_items <= 0:
        raise ValueError(f"cannot sample {target} items from an empty set")
    copies = math.ceil(target / n_items)
    pool = np.tile(np.arange(n_items, dtype=np.int64), copies)
    return pool[np.sort(rng.choice(len(pool), size=target, replace=False))]


@dataclass(frozen=True)
class Plan:
    strategy: str
    seed: int
    rows: list[tuple[str, str, str]]  # (language, dataset, id) per occurrence, in training order
    stage1: dict[str, int]  # language -> size after stage 1 (natural size for other strategies)
    temperature: float | None = None

    def summary(self) -> dict:
        langs: dict[str, dict] = {}
        per_ds = Counter((lang, ds) for lang, ds, _ in self.rows)
        per_lang = Counter(lang for lang, _, _ in self.rows)
        for lang in sorted(self.stage1):
            langs[lang] = {
                "utterances": per_lang.get(lang, 0),
                "stage1": self.stage1[lang],
                "datasets": {ds: n for (l2, ds), n in sorted(per_ds.items()) if l2 == lang},
            }
        out = {"strategy": self.strategy, "seed": self.seed, "total": len(self.rows), "languages": langs}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out


def _check(corpus: Corpus) -> None:
    if not corpus:
        raise ValueError("balance: the store has no utterances in this split")
    for (lang, ds), ids in corpus.items():
        if not ids:
            raise ValueError(f"balance: dataset {ds} ({lang}) has no utterances")


def _by_language(corpus: Corpus) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lang, ds in sorted(corpus):
        out.setdefault(lang, []).append(ds)
    return out


def _shuffled(rows: list[tuple[str, str, str]], seed: int) -> list[tuple[str, str, str]]:
    order = _rng(seed, "order").permutation(len(rows))
    return [rows[i] for i in order]


def plan_two_stage(corpus: Corpus, seed: int) -> Plan:
    _check(corpus)
    pools: dict[str, list[tuple[str, str, str]]] = {}
    stage1: dict[str, int] = {}
    for lang, datasets in _by_language(corpus).items():
        n_star = max(len(corpus[(lang, d)]) for d in datasets)
        pool = []
        for d in datasets:
            ids = corpus[(lang, d)]
            pool += [(lang, d, ids[i]) for i in replicate_subsample(len(ids), n_star, _rng(seed, "stage1", lang, d))]
        pools[lang], stage1[lang] = pool, len(pool)
    m = max(stage1.values())
    rows = []
    for lang, pool in pools.items():
        rows += [pool[i] for i in replicate_subsample(len(pool), m, _rng(seed, "stage2", lang))]
    return Plan("two-stage", seed, _shuffled(rows, seed), stage1)


def plan_natural(corpus: Corpus, seed: int) -> Plan:
    _check(corpus)
    rows = [(lang, d, uid) for (lang, d), ids in sorted(corpus.items()) for uid in ids]
    stage1 = dict(Counter(lang for lang, _, _ in rows))
    return Plan("natural", seed, _shuffled(rows, seed), stage1)


def temperature_targets(sizes: dict[str, int], temperature: float, total: int) -> dict[str, int]:
    """p_l proportional to n_l^(1/T), turned into integer counts summing to ``total`` (largest remainder)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (is {temperature})")
    w = {lang: n ** (1.0 / temperature) for lang, n in sizes.items()}
    z = sum(w.values())
    exact = {lang: total * v / z for lang, v in w.items()}
    out = {lang: math.floor(x) for lang, x in exact.items()}
    for lang in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: total - sum(out.values())]:
        out[lang] += 1
    return out


def plan_temperature(corpus: Corpus, seed: int, temperature: float = 3.0, total: int | None = None) -> Plan:
    """Temperature sampling (Arivazhagan et al. 2019); T=1 is natural proportions, T->inf uniform.

    The plan keeps the corpus size (``total`` defaults to the number of utterances); within a language,
    datasets keep their natural proportions.
    """
    _check(corpus)
    by_lang = _by_language(corpus)
    pools = {lang: [(lang, d, uid) for d in ds for uid in corpus[(lang, d)]] for lang, ds in by_lang.items()}
    sizes = {lang: len(p) for lang, p in pools.items()}
    targets = temperature_targets(sizes, temperature, total or sum(sizes.values()))
    rows = []
    for lang, pool in pools.items():
        if targets[lang]:
            rows += [pool[i] for i in replicate_subsample(len(pool), targets[lang], _rng(seed, "temperature", lang))]
    return Plan("temperature", seed, _shuffled(rows, seed), sizes, temperature)


def make_plan(corpus: Corpus, strategy: str, seed: int, temperature: float = 3.0) -> Plan:
    if strategy == "two-stage":
        return plan_two_stage(corpus, seed)
    if strategy == "natural":
        return plan_natural(corpus, seed)
    if strategy == "temperature":
        return plan_temperature(corpus, seed, temperature)
    raise ValueError(f"strategy must be one of {list(STRATEGIES)} (is {strategy!r})")


# --- adapters: store -> corpus, plan -> files, plan -> Ray Data ---------------------------------------------

def corpus_from_table(meta: pa.Table) -> tuple[Corpus, dict[str, float]]:
    """Store metadata (id, language, dataset, duration_s) -> (corpus with sorted ids, duration per id)."""
    corpus: Corpus = {}
    ids, langs, dss = meta["id"].to_pylist(), meta["language"].to_pylist(), meta["dataset"].to_pylist()
    for uid, lang, ds in zip(ids, langs, dss):
        corpus.setdefault((lang, ds), []).append(uid)
    for v in corpus.values():
        v.sort()
    return corpus, dict(zip(ids, meta["duration_s"].to_pylist()))


def plan_table(plan: Plan, durations: dict[str, float]) -> pa.Table:
    seen: Counter = Counter()
    repeats = []
    for _, _, uid in plan.rows:
        repeats.append(seen[uid])
        seen[uid] += 1
    return pa.table({
        "index": pa.array(range(len(plan.rows)), pa.int64()),
        "id": [r[2] for r in plan.rows], "language": [r[0] for r in plan.rows],
        "dataset": [r[1] for r in plan.rows], "repeat": pa.array(repeats, pa.int32()),
        "duration_s": [durations[r[2]] for r in plan.rows],
    }, schema=PLAN_SCHEMA)


def hours_table(table: pa.Table) -> dict[str, dict[str, float]]:
    """{language: {dataset: hours}} of a store metadata table or a plan table."""
    out: dict[str, dict[str, float]] = {}
    for lang, ds, dur in zip(table["language"].to_pylist(), table["dataset"].to_pylist(),
                             table["duration_s"].to_pylist()):
        out.setdefault(lang, {}).setdefault(ds, 0.0)
        out[lang][ds] += dur / 3600.0
    return out


def write_plan(plan: Plan, durations: dict[str, float], before: pa.Table, out_dir: str | os.PathLike,
               extra: dict | None = None) -> dict:
    """Write plan.parquet + summary.json (the plan summary plus hours before/after) into ``out_dir``, a folder or a
    bucket location, each file whole; returns the summary."""
    out = resolve(out_dir)
    table = plan_table(plan, durations)
    write_shard(out.join(PLAN_FILE), table)
    summary = plan.summary()
    full = dict(summary, hours_before=hours_table(before), hours_after=hours_table(table), **(extra or {}))
    out.join(SUMMARY_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
    return summary


def missing_from_store(plan: pa.Table, store_meta: pa.Table) -> dict[str, int]:
    """{dataset: how many of the plan's distinct utterances are not in the store (by dataset and id)}, only the
    datasets that miss some. Pure."""
    have = set(zip(store_meta["dataset"].to_pylist(), store_meta["id"].to_pylist()))
    wanted = set(zip(plan["dataset"].to_pylist(), plan["id"].to_pylist()))
    return dict(sorted(Counter(ds for ds, uid in wanted if (ds, uid) not in have).items()))


def check_plan_against_store(store: str, plan_dir: str, split: str = "train") -> dict:
    """Refuse (ValueError) a plan whose utterances are not all in ``store``'s ``split``, naming how many are missing
    and from which datasets, and the store the plan was made from. Reads ids only. Returns {"note": ...} when
    every row is there but the store's fingerprint differs from the plan's (the store changed since)."""

    plan = read_plan(plan_dir).select(["id", "dataset"])
    meta = read_metadata(store, split, columns=["id", "dataset"])
    missing = missing_from_store(plan, meta)
    summary_path = resolve(plan_dir).join(SUMMARY_FILE)
    made = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    source = (f"the plan was made from store {made['store']!r}"
              + (f" (fingerprint {made['store_fingerprint']})" if made.get("store_fingerprint") else "")
              if made.get("store") else "the plan does not say which store it was made from")
    here = store_fingerprint(store, split)
    if missing:
        distinct = len(set(zip(plan["dataset"].to_pylist(), plan["id"].to_pylist())))
        by_ds = ", ".join(f"{ds}: {n}" for ds, n in missing.items())
        raise ValueError(f"data.plan {plan_dir}: {sum(missing.values())} of the {distinct} utterances it uses are "
                         f"not in data.store {store} (split {split}, fingerprint {here}); missing by dataset: "
                         f"{by_ds}. {source[0].upper() + source[1:]}; make a plan from this store: polyglot-lion "
                         f"balance --store {store} --out PLAN")
    if made.get("store_fingerprint") and made["store_fingerprint"] != here:
        return {"note": f"data.plan {plan_dir}: every utterance it uses is in data.store {store}, but the store "
                        f"changed since the plan was made (fingerprint {made['store_fingerprint']} -> {here})"}
    return {}


def read_plan(plan_dir: str | os.PathLike) -> pa.Table:
    """The plan table of a plan folder or bucket location."""
    loc = resolve(plan_dir).join(PLAN_FILE)
    if not loc.exists():
        raise FileNotFoundError(f"plan {plan_dir}: no {PLAN_FILE}; run 'polyglot-lion balance' first")
    return pq.read_table(loc.path, filesystem=loc.fs)


def attach_counts(batch: pa.Table, counts: dict[str, int]) -> pa.Table:
    """Keep the store rows the plan uses, each once with how many times the plan uses it (``count``); drop the
    rest. The repeats are made where they cost nothing: ``train.data.expand_repeats`` in the trainer, after
    featurisation (copying audio per repeat in Ray Data cost more CPU than decoding it)."""
    ids = batch["id"].to_pylist()
    keep = [i for i, uid in enumerate(ids) if counts.get(uid, 0) > 0]
    out = batch.take(pa.array(keep, pa.int64()))
    return out.append_column("count", pa.array([counts[ids[i]] for i in keep], pa.int32()))


def shard_order(files: list[str], seed: int, passes: int = 1) -> list[str]:
    """The store's shard files in a seeded random order, so every dataset is spread over the stream; with
    ``passes`` > 1, that many passes one after another, each in its own order (pass 0 is the one-pass order)."""
    if passes < 1:
        raise ValueError(f"passes must be >= 1 (is {passes})")
    files = sorted(files)
    out = []
    for p in range(passes):
        rng = np.random.default_rng(seed if p == 0 else [seed, p])
        out += [files[i] for i in rng.permutation(len(files))]
    return out


def read_balanced(store: str, plan_dir: str, split: str = "train", columns: list[str] | None = None,
                  seed: int = 0, passes: int = 1):
    """A Ray Dataset of the store's utterances that the plan uses, each once with its ``count`` (how many times
    the plan uses it); ``train.data.expand_repeats`` turns a row into its ``count`` occurrences, side by side.

    The store is partitioned by language and dataset, so reading it in order would feed a trainer one dataset
    after another. The shard files are read in a seeded random order instead (every dataset spread over the
    stream), and the trainer mixes rows further in a shuffle buffer (``train.data.shuffle_rows``). Expanded,
    the multiset of (id, repeat) equals the plan's (``passes`` times: one read of the dataset then makes that
    many epochs, each in its own shard order, which spares a small corpus the input pipeline's restart at
    every epoch).
    """
    import ray


    plan = read_plan(plan_dir)
    counts = Counter(plan["id"].to_pylist())
    wanted = set(plan["dataset"].to_pylist())
    shards = [f for p in list_partitions(store, split) if p.dataset in wanted for f in p.files]
    files = shard_order(shards, seed, passes)
    fs = resolve(store).fs  # passed explicitly: pickled to the read tasks with a bucket's endpoint and keys
    # Light stages: fractional CPUs, so they fit beside a training worker on a small node. One read per pass,
    # chained: Ray's file-listing reader drops a path it has already seen.
    if not ray.data.DataContext.get_current().use_datasource_v2:
        ds = ray.data.read_parquet(files, columns=columns, num_cpus=0.25, filesystem=fs)
    else:
        reads = [ray.data.read_parquet(files[i:i + len(shards)], columns=columns, num_cpus=0.25, filesystem=fs)
                 for i in range(0, len(files), len(shards))]
        ds = reads[0].union(*reads[1:]) if len(reads) > 1 else reads[0]
    # a task, not an actor: Ray puts the counts in the object store once, and task processes are reused
    # across datasets (an actor is a fresh process, and its start-up, per training job)
    return ds.map_batches(attach_counts, fn_args=(dict(counts),), batch_format="pyarrow", num_cpus=0.25)


def plot_balance(summary_path: str | os.PathLike, out_png: str | os.PathLike) -> str:
    """Before/after bars of hours per language, stacked by dataset (either location may be in a bucket)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = json.loads(resolve(summary_path).read_text())
    langs = sorted(set(s["hours_before"]) | set(s["hours_after"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, key, title in ((axes[0], "hours_before", "before (natural)"),
                           (axes[1], "hours_after", f"after ({s['strategy']}, seed {s['seed']})")):
        for x, lang in enumerate(langs):
            bottom = 0.0
            for j, (ds, h) in enumerate(sorted(s[key].get(lang, {}).items())):
                ax.bar(x, h, bottom=bottom, color=cmap(j % 20), edgecolor="white")
                if h > 0:
                    ax.text(x, bottom + h / 2, ds, ha="center", va="center", fontsize=7)
                bottom += h
            total = sum(s[key].get(lang, {}).values())
            ax.text(x, bottom, f"{total:.2f} h", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_title(title)
    axes[0].set_ylabel("audio hours (stacked by dataset)")
    fig.suptitle("Training mix per language")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    resolve(out_png).write_bytes(png.getvalue())
    return str(out_png)
