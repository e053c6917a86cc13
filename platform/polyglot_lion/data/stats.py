"""What is in a store: utterances, hours and rejects per dataset/split, totals per language.

    polyglot-lion stats --store store/ [--json]          # or --store s3://bucket/store
"""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from .store import list_partitions


def store_stats(store: str, split: str | None = None) -> dict:
    """``{"datasets": {NAME or NAME/SPLIT: {...}}, "languages": {LANG: {"utterances", "hours"}}}``.

    Counts come from the shards themselves (only the duration column is read), rejects from _rejects.jsonl.
    """
    parts = list_partitions(store, split)
    splits_of: dict[str, set[str]] = {}
    for p in parts:
        splits_of.setdefault(p.dataset, set()).add(p.split)
    datasets, languages = {}, {}
    for p in parts:
        n, seconds = 0, 0.0
        for f in p.files:
            t = pq.read_table(f, columns=["duration_s"], filesystem=p.fs)
            n += t.num_rows
            seconds += pc.sum(t["duration_s"]).as_py() or 0.0
        rejected: dict[str, int] = {}
        for r in p.rejects():
            rejected[r["reason"]] = rejected.get(r["reason"], 0) + 1
        key = p.dataset if len(splits_of[p.dataset]) == 1 else f"{p.dataset}/{p.split}"
        datasets[key] = {"language": p.language, "split": p.split, "utterances": n,
                         "hours": round(seconds / 3600.0, 6), "rejected": dict(sorted(rejected.items()))}
        lang = languages.setdefault(p.language, {"utterances": 0, "hours": 0.0})
        lang["utterances"] += n
        lang["hours"] += seconds / 3600.0
    for v in languages.values():
        v["hours"] = round(v["hours"], 6)
    return {"datasets": datasets, "languages": dict(sorted(languages.items()))}


def format_stats(stats: dict) -> str:
    lines = [f"{'dataset':<24}{'lang':<6}{'split':<7}{'utts':>8}{'hours':>10}{'rejected':>10}  reasons"]
    for name, d in stats["datasets"].items():
        rej = sum(d["rejected"].values())
        reasons = ", ".join(f"{k}={v}" for k, v in d["rejected"].items()) or "-"
        lines.append(f"{name:<24}{d['language']:<6}{d['split']:<7}{d['utterances']:>8}{d['hours']:>10.3f}"
                     f"{rej:>10}  {reasons}")
    total_h = sum(v["hours"] for v in stats["languages"].values()) or 1.0
    lines.append("")
    lines.append(f"{'language':<10}{'utts':>8}{'hours':>10}{'share of hours':>16}")
    for lang, v in stats["languages"].items():
        lines.append(f"{lang:<10}{v['utterances']:>8}{v['hours']:>10.3f}{100 * v['hours'] / total_h:>15.1f}%")
    return "\n".join(lines)
