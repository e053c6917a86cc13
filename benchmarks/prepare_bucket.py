"""`prepare` into a bucket vs onto the local disk: the same clips, the same warm Ray session, runs alternated.

    python benchmarks/prepare_bucket.py [--clips 1200] [--repeats 5] [--out bench_out/prepare_bucket]
    python benchmarks/prepare_bucket.py --clips 24 --repeats 1          # tests/test_prepare_bucket_smoke.py

The bucket is a real S3-compatible server on 127.0.0.1 (moto in server mode, ``polyglot_lion.testing.s3``) started
by this script; it runs on the same cores as the import, as a MinIO beside a small node would. The corpus is
synthetic (tones with harmonics, 22.05 kHz WAV, 2-6 s, one JSONL manifest per language) and is written once. One Ray
session (2 CPUs) serves every run; one untimed import warms it first. Each run writes a fresh store (a new folder, a
new prefix in the bucket), local and bucket alternating, so a change in the machine's load hits both alike. Reported:
the median wall time of each, clips/s, the ratio bucket/local (throughput), and the load average around the runs
(other workers share these CPUs). Results go to OUT/prepare_bucket.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

LANGUAGES = {"en": "the quick brown fox jumps over a lazy dog while birds sing in the morning light",
             "ms": "saya suka makan nasi lemak di kedai kopi dekat rumah pada waktu pagi",
             "ta": "வணக்கம் உலகம் இது ஒரு சோதனை வாக்கியம் நன்றி மிகவும் நல்லது",
             "zh": "今天天气很好我们一起去公园散步吧然后吃饭"}


def make_corpus(root: Path, clips: int) -> list[dict]:
    """``clips`` WAV files over four languages and their import specs (written once; reused when present)."""
    import numpy as np

    from polyglot_lion.testing import write_audio

    specs_file = root / "specs.json"
    if specs_file.exists() and json.loads(specs_file.read_text())["clips"] == clips:
        return json.loads(specs_file.read_text())["specs"]
    rng = np.random.default_rng(0)
    specs = []
    for li, (lang, sentence) in enumerate(LANGUAGES.items()):
        words = sentence.split() if lang != "zh" else list(sentence)
        lines = []
        for i in range(li, clips, len(LANGUAGES)):
            n = int(rng.integers(3, 9))
            text = (" " if lang != "zh" else "").join(rng.choice(words, n))
            write_audio(root / lang / f"{i:06d}.wav", float(rng.uniform(2.0, 6.0)), 22_050, seed=i)
            lines.append(json.dumps({"audio": f"{i:06d}.wav", "id": f"c{i:06d}", "text": text}, ensure_ascii=False))
        (root / lang / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        specs.append({"format": "jsonl", "input": str(root / lang / "train.jsonl"), "dataset": f"bench-{lang}",
                      "language": lang, "split": "train"})
    specs_file.write_text(json.dumps({"clips": clips, "specs": specs}))
    return specs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=1200, help="clips in the corpus (default 1200)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per target; the median is reported (default 5)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the Ray session (default 2)")
    ap.add_argument("--out", default="bench_out/prepare_bucket")
    args = ap.parse_args()

    import ray

    from polyglot_lion.data.prepare import ImportSpec, prepare
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.runtime import init_ray
    from polyglot_lion.testing.s3 import S3Server

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    specs = [ImportSpec.from_dict(s) for s in make_corpus(out / "corpus", args.clips)]
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    with S3Server(log_path=str(out / "moto.log")) as s3, s3.activate():  # before Ray: its workers inherit the env
        bucket = s3.create_bucket("bench")
        init_ray(num_cpus=args.num_cpus, object_store_mb=512, quiet=True)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            prepare(specs, str(out / "warmup"))  # untimed: starts the session's workers
            runs: dict[str, list[float]] = {"local": [], "bucket": []}
            load = [os.getloadavg()[0]]
            clips = None
            for r in range(args.repeats):
                for target in (("local", "bucket") if r % 2 == 0 else ("bucket", "local")):
                    store = str(out / f"store-{r}") if target == "local" else f"{bucket}/store-{r}"
                    t0 = time.perf_counter()
                    metas = prepare(specs, store)
                    runs[target].append(time.perf_counter() - t0)
                    n = sum(m["utterances"] for m in metas)
                    assert clips in (None, n), (clips, n)
                    clips = n
                load.append(os.getloadavg()[0])
                print(f"repeat {r + 1}/{args.repeats}: local {runs['local'][-1]:.2f} s, bucket "
                      f"{runs['bucket'][-1]:.2f} s, load {load[-1]:.1f}", file=sys.stderr)
            same = (read_metadata(f"{bucket}/store-0", columns=["id", "text"]).sort_by("id")
                    .equals(read_metadata(str(out / "store-0"), columns=["id", "text"]).sort_by("id")))
        finally:
            ray.shutdown()
    summary = {"clips": clips, "repeats": args.repeats, "num_cpus": args.num_cpus, "same_rows": same,
               "load_avg_1min": {"min": min(load), "max": max(load)}}
    for target, walls in runs.items():
        wall = statistics.median(walls)
        summary[target] = {"wall_s": round(wall, 3), "clips_per_s": round(clips / wall, 1),
                           "runs_wall_s": [round(w, 2) for w in walls]}
    summary["ratio_bucket_over_local"] = round(summary["bucket"]["clips_per_s"] / summary["local"]["clips_per_s"], 3)
    (out / "prepare_bucket.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"\n| prepare into a bucket (moto on 127.0.0.1) vs local disk, {clips} clips, {args.num_cpus} CPUs | "
          f"{summary['bucket']['clips_per_s']} clips/s | local disk, {summary['local']['clips_per_s']} clips/s | "
          f"{summary['ratio_bucket_over_local']:.2f}x | load {min(load):.1f}-{max(load):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
