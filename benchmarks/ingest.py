"""Import throughput: `prepare` on Ray Data (1 and 2 CPUs) vs a plain single-process loop, same corpus, one run.

    python benchmarks/ingest.py [--clips 2400] [--out bench_out/ingest]

The corpus is synthetic (espeak-ng, 22.05 kHz WAV, 6-16 words per clip, 12 datasets). The baseline does the
same work in one process with no Ray: read the manifest, soundfile read -> mono -> soxr resample to 16 kHz ->
FLAC encode -> normalise text -> write Parquet shards. Each Ray run is a fresh subprocess with `ray.init`
(num_cpus=N) timed separately from the import itself. Results go to OUT/ingest.json and stdout (Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def baseline(specs: list[dict], out_dir: str) -> dict:
    """The plain loop: one process, one clip at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    import soxr

    from polyglot_lion.data.audio import encode_flac
    from polyglot_lion.data.text import normalize_text

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    clips, seconds, shard, rows = 0, 0.0, 0, []
    for spec in specs:
        base = os.path.dirname(spec["input"])
        with open(spec["input"], encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                x, rate = sf.read(os.path.join(base, obj["audio"]), dtype="float32", always_2d=True)
                x = soxr.resample(x.mean(axis=1), rate, 16_000, quality="HQ")
                rows.append({"id": obj["id"], "audio": encode_flac(x), "duration_s": len(x) / 16_000,
                             "text": normalize_text(obj["text"]), "raw_text": obj["text"]})
                clips += 1
                seconds += len(x) / 16_000
                if len(rows) == 1000:
                    pq.write_table(pa.Table.from_pylist(rows), f"{out_dir}/part-{shard:05d}.parquet")
                    shard, rows = shard + 1, []
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), f"{out_dir}/part-{shard:05d}.parquet")
    return {"clips": clips, "audio_hours": seconds / 3600, "wall_s": time.perf_counter() - t0}


def ray_run(corpus_json: str, store: str, num_cpus: int) -> dict:
    """One Ray import in this process (called in a fresh subprocess per CPU count)."""
    import ray

    from polyglot_lion.data.prepare import ImportSpec, prepare
    from polyglot_lion.runtime import init_ray

    t0 = time.perf_counter()
    init_ray(num_cpus=num_cpus, object_store_mb=512, quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t1 = time.perf_counter()
    specs = [ImportSpec.from_dict(s) for s in json.loads(Path(corpus_json).read_text())]
    metas = prepare(specs, store)  # cold: the session's first Ray Data job starts its workers and actors
    t2 = time.perf_counter()
    prepare(specs, store + "-warm")  # warm: the same import again in the same session
    t3 = time.perf_counter()
    ray.shutdown()
    return {"clips": sum(m["utterances"] for m in metas), "audio_hours": sum(m["hours"] for m in metas),
            "rejected": sum(sum(m["rejected"].values()) for m in metas), "ray_init_s": t1 - t0,
            "wall_s": t2 - t1, "warm_wall_s": t3 - t2}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6000, help="train clips to synthesise (>= 2000; default 6000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the median is reported")
    ap.add_argument("--out", default="bench_out/ingest")
    ap.add_argument("--_ray-child", nargs=3, metavar=("CORPUS", "STORE", "CPUS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ray_child:
        print(json.dumps(ray_run(args._ray_child[0], args._ray_child[1], int(args._ray_child[2]))))
        return 0

    from polyglot_lion.data.synth import synthesize_corpus

    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / "corpus.json").exists():
        synthesize_corpus(str(corpus), args.clips, eval_utterances=0, seed=0, min_words=6, max_words=16)
    specs = [s for s in json.loads((corpus / "corpus.json").read_text()) if s["split"] == "train"]
    (corpus / "train.json").write_text(json.dumps(specs))

    results: dict[str, list[dict]] = {"baseline": [], "ray_1cpu": [], "ray_2cpu": []}
    for r in range(args.repeats):
        results["baseline"].append(baseline(specs, str(out / f"baseline-{r}")))
        for n in (1, 2):
            proc = subprocess.run([sys.executable, __file__, "--_ray-child", str(corpus / "train.json"),
                                   str(out / f"store-{n}cpu-{r}"), str(n)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                return 1
            results[f"ray_{n}cpu"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]['wall_s']:.1f}s" for k, v in results.items()),
              file=sys.stderr)

    summary = {}
    for k, runs in results.items():
        wall = statistics.median(x["wall_s"] for x in runs)
        summary[k] = {"clips": runs[0]["clips"], "audio_hours": runs[0]["audio_hours"], "wall_s": wall,
                      "clips_per_s": runs[0]["clips"] / wall, "audio_hours_per_s": runs[0]["audio_hours"] / wall,
                      "runs_wall_s": [round(x["wall_s"], 2) for x in runs]}
        if "ray_init_s" in runs[0]:
            summary[k]["ray_init_s"] = statistics.median(x["ray_init_s"] for x in runs)
            summary[k]["warm_wall_s"] = statistics.median(x["warm_wall_s"] for x in runs)
    base = summary["baseline"]["wall_s"]
    for k in ("ray_1cpu", "ray_2cpu"):
        summary[k]["speedup_vs_baseline"] = base / summary[k]["wall_s"]
        summary[k]["warm_speedup_vs_baseline"] = base / summary[k]["warm_wall_s"]
    scaling = summary["ray_1cpu"]["wall_s"] / summary["ray_2cpu"]["wall_s"]
    warm_scaling = summary["ray_1cpu"]["warm_wall_s"] / summary["ray_2cpu"]["warm_wall_s"]
    summary["warm_scaling_1_to_2_cpus"] = warm_scaling
    per_cpu_hps = summary["ray_2cpu"]["audio_hours"] / summary["ray_2cpu"]["warm_wall_s"] / 2
    paper_hours = 968.83
    node16_s = paper_hours / (per_cpu_hps * 16)
    summary["scaling_1_to_2_cpus"] = scaling
    summary["extrapolation_968h_16_cores_min"] = node16_s / 60
    (out / "ingest.json").write_text(json.dumps(summary, indent=2))

    print(f"\ncorpus: {summary['baseline']['clips']} clips, {summary['baseline']['audio_hours']:.3f} h "
          f"(espeak-ng 22.05 kHz WAV -> 16 kHz FLAC); median of {args.repeats} runs\n")
    print("| run | wall (s) | clips/s | audio-h/s | vs baseline |")
    print("|---|---:|---:|---:|---:|")
    rows = [("plain loop, 1 process", summary["baseline"]["wall_s"])]
    for n in (1, 2):
        rows.append((f"Ray Data prepare, {n} CPU{'s' if n > 1 else ''}, cold session",
                     summary[f"ray_{n}cpu"]["wall_s"]))
        rows.append((f"Ray Data prepare, {n} CPU{'s' if n > 1 else ''}, warm session",
                     summary[f"ray_{n}cpu"]["warm_wall_s"]))
    clips, hours = summary["baseline"]["clips"], summary["baseline"]["audio_hours"]
    for label, wall in rows:
        print(f"| {label} | {wall:.2f} | {clips / wall:.0f} | {hours / wall:.4f} | {base / wall:.2f}x |")
    print(f"\nscaling 1 -> 2 CPUs: {scaling:.2f}x cold, {warm_scaling:.2f}x warm; ray.init (not in the walls "
          f"above): {summary['ray_2cpu']['ray_init_s']:.1f} s")
    print(f"extrapolation: 968.83 h on one 16-core node at the measured per-CPU rate "
          f"({per_cpu_hps * 3600:.0f} audio-h per CPU-hour): {node16_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
