"""Corpus recipes (issue 23): importing from inside archives vs from the unpacked folder, and clips/s per recipe.

    python benchmarks/ingest_recipes.py [--pair-scale 1600] [--scale 400] [--repeats 5] [--out bench_out/ingest_recipes]
    python benchmarks/ingest_recipes.py --pair-scale 2 --scale 2 --repeats 1 --out /tmp/r   # the smoke test's run

Every import is ``prepare([ImportSpec(recipe=...)])`` in one local Ray session of 2 CPUs started once
(``ray.init`` is not timed), after an untimed warm-up import of every recipe's miniature, so no figure holds the
session's cold start.
Each import writes a fresh store; the wall time covers listing, the Ray Data tasks and publishing.

Part 1, archives in place vs unpacked, at ``--pair-scale`` (large enough for an archive to be more than a few
of prepare's chunks, which is where reading in place used to fall behind). The same clips (the same bytes) are
laid out twice: as the publisher ships them and with every archive unpacked next to where it was (both layouts
are read by the recipe):
  - AISHELL-1, per-speaker shape: 8 speakers of ``pair_scale // 2`` clips (3-5 s, 16 kHz), ``wav/<spk>.tar.gz``
    vs ``wav/{train,dev,test}/<spk>/*.wav``; like the real corpus, one archive per speaker;
  - FLEURS zh (the miniature at ``pair_scale``, 1 s clips): ``audio/<split>.tar.gz`` vs ``audio/<split>/*.wav``;
    like the real corpus, one archive holds a whole split;
  - FLEURS zh's shape (``build_fleurs_splits``): ``pair_scale`` clips of 5-11 s split 70/9/21 as FLEURS zh is, the
    same two layouts; the longer clips weigh inflating against decoding as the real corpus does;
  - SLR65 (the miniature at ``pair_scale``): ``ta_in_{female,male}.zip`` vs each zip unzipped into a folder of
    its name (``ta_in_female/*.wav``, which the recipe reads); the miniature's zips store their members
    uncompressed.
Both imports of a pair must give the same utterance ids, texts, durations and FLAC bytes (checked; a pair that
differs makes the run fail; rejected records are not compared: their reasons may differ, e.g. a zip member
failing its CRC is unreadable_member in the zip and missing_audio once unzip has dropped it). The two layouts alternate in order from repeat to repeat; the median is reported.
Beside the wall times, the same task bodies (``read_sources`` then ``process_batch`` over every block) run
outside Ray in the driver, timed in CPU time (the second of two passes), and the archive reader alone: what
reading in place costs per clip, apart from scheduling and from other work on the machine. Their ratio (CPU
ratio) is what the wall-time ratio tends to once an import is long enough that its fixed costs (starting the
Ray Data job, listing, publishing) no longer count: the CPUs are busy for the whole of it.
NSC and Mesolitica ship zips with no unpacked variant in their recipes, so they are only in part 2.

Part 2, clips/s per recipe: ``testing.corpora.make_paper_downloads(scale)``, the miniatures of the nine
downloads (twelve datasets, one import each) with ``scale`` more good clips per corpus (1 s each) on top of
their bad records; each import's accepted and rejected counts must equal what the miniature says. Then all
twelve in one ``prepare`` call, as ``jobs/configs/corpora/paper.yaml`` runs them.

Results: OUT/ingest_recipes.json, and Markdown tables on stdout. The corpora and stores (OUT/work) are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path

PAIR_SPEAKERS = 8
# The split of the pair's i-th speaker (AISHELL-1 keeps each speaker in one split).
PAIR_SPLITS = ("train", "train", "train", "train", "train", "train", "dev", "test")


def build_aishell1_speakers(root: Path, speakers: int, per_speaker: int) -> int:
    """AISHELL-1 as published (``data_aishell/transcript``, ``data_aishell/wav/<spk>.tar.gz`` holding
    ``<split>/<spk>/<utt>.wav``), ``speakers`` x ``per_speaker`` clips; returns the number of clips."""
    from polyglot_lion.testing.corpora import _encoded, _tar_gz, _text

    base = root / "data_aishell"
    lines = []
    for s in range(speakers):
        spk = f"S{100 + s:04d}"
        members = {}
        for u in range(per_speaker):
            key = f"BAC009{spk}W{u:04d}"
            seed = 1000 * s + u
            lines.append(f"{key} 扩展 的 句子 {s} {u}")
            members[f"{PAIR_SPLITS[s % len(PAIR_SPLITS)]}/{spk}/{key}.wav"] = _encoded(3.0 + (seed % 5) / 2, 16_000,
                                                                                       "WAV", seed)
        _tar_gz(base / "wav" / f"{spk}.tar.gz", members)
    _text(base / "transcript" / "aishell_transcript_v0.8.txt", lines)
    return speakers * per_speaker


def build_fleurs_splits(root: Path, clips: int) -> int:
    """FLEURS zh as published (``data/cmn_hans_cn/<split>.tsv`` with no header row, ``data/cmn_hans_cn/audio/
    <split>.tar.gz`` holding ``<split>/<name>.wav``), ``clips`` clips of 5-11 s (a FLEURS clip is a read
    sentence of several seconds; FLEURS zh holds 9.73 h), split as FLEURS zh is (about 70% train, 9% dev, 21%
    test); returns the number of clips."""
    from polyglot_lion.testing.corpora import _encoded, _tar_gz, _text

    d = root / "data" / "cmn_hans_cn"
    a = max(1, clips * 70 // 100)
    b = max(a + 1, clips * 79 // 100)
    clips = max(clips, b + 1)  # a clip in each split at the smoke test's scale
    bounds = {"train": (0, a), "dev": (a, b), "test": (b, clips)}
    for split, (lo, hi) in bounds.items():
        rows, members = [], {}
        for i in range(lo, hi):
            text = f"扩展 的 句子 {i}"
            rows.append(f"{i}\t{i}.wav\t{text}.\t{text}\t{len(text)}\t16000\tFEMALE")
            members[f"{split}/{i}.wav"] = _encoded(5.0 + (i % 13) / 2, 16_000, "WAV", i)
        _text(d / f"{split}.tsv", rows)
        _tar_gz(d / "audio" / f"{split}.tar.gz", members)
    return clips


def unpacked_copy(packed: Path, unpacked: Path, archives_glob: str) -> None:
    """A copy of ``packed`` with each archive matching ``archives_glob`` unpacked and removed: a tar.gz into its
    own folder (its members name their folders), a zip into a folder named after it (``unzip -d NAME``). A zip
    member that fails its CRC check is left out, as unzip leaves it unusable."""
    import zipfile

    shutil.copytree(packed, unpacked)
    for archive in sorted(unpacked.glob(archives_glob)):
        if archive.suffix == ".zip":
            dest = archive.with_suffix("")
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    try:
                        data = z.read(info)
                    except zipfile.BadZipFile:
                        continue
                    (dest / info.filename).parent.mkdir(parents=True, exist_ok=True)
                    (dest / info.filename).write_bytes(data)
        else:
            with tarfile.open(archive) as t:
                t.extractall(archive.parent, filter="data")
        archive.unlink()


def store_contents(store: str) -> dict[str, tuple[str, float, str]]:
    """{utterance id: (text, duration_s, sha1 of the FLAC bytes)} over the whole store."""
    import pyarrow.parquet as pq

    from polyglot_lion.data.store import store_files, store_filesystem

    out = {}
    for f in store_files(store):
        t = pq.read_table(f, columns=["id", "text", "duration_s", "audio"], filesystem=store_filesystem(store))
        for uid, text, dur, audio in zip(*(t[c].to_pylist() for c in ("id", "text", "duration_s", "audio"))):
            out[uid] = (text, dur, hashlib.sha1(audio).hexdigest())
    return out


def cpu_per_clip(spec) -> dict:
    """The same per-clip work outside Ray, in this process: CPU ms per clip of what ``prepare``'s task does
    (``read_sources`` then ``process_batch`` over every block) and of reading the archives' members alone
    (``iter_members``: for a tar.gz, mostly inflation), and how many blocks (Ray tasks) there are.
    CPU time moves much less than wall time when other work shares the machine."""
    from dataclasses import asdict

    from polyglot_lion.data.archives import iter_members
    from polyglot_lion.data.prepare import PrepareOptions, _blocks, _list_recipe, _plan, process_batch, read_sources

    opts = PrepareOptions()
    targets, routes = _plan([spec])
    items, _ = _list_recipe(0, spec, targets, routes)
    blocks = _blocks(items, opts.batch_size)
    archives = sorted({it["archive"] for it in items if it["archive"]})
    for _ in range(2):  # the second pass is kept: the first one also pays for this process's heap growing
        t0 = time.process_time()
        results = [kind for b in blocks for chunk in read_sources(b)
                   for _, (kind, _) in process_batch(chunk, [asdict(t) for t in targets], routes,
                                                     opts.max_duration_s, opts.min_duration_s)]
        task_cpu = time.process_time() - t0
        t0 = time.process_time()
        for a in archives:
            for _ in iter_members(a):
                pass
        read_cpu = time.process_time() - t0
    clips = results.count("row")
    return {"tasks": len(blocks), "cpu_run_clips": clips, "task_cpu_ms_per_clip": 1000 * task_cpu / clips,
            "archive_read_cpu_ms_per_clip": 1000 * read_cpu / clips}


def task_count(spec) -> int:
    """How many Ray tasks ``prepare`` makes of an import: one per tar.gz, a zip's members and loose files in
    blocks of batch_size."""
    from polyglot_lion.data.prepare import PrepareOptions, _blocks, _list_recipe, _plan

    targets, routes = _plan([spec])
    items, _ = _list_recipe(0, spec, targets, routes)
    return len(_blocks(items, PrepareOptions().batch_size))


def timed_import(specs: list, store: Path) -> tuple[float, list[dict]]:
    from polyglot_lion.data.prepare import prepare

    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    metas = prepare(specs, str(store))
    return time.perf_counter() - t0, metas


def _totals(metas: list[dict]) -> tuple[int, float, dict[str, int]]:
    rejected: dict[str, int] = {}
    for m in metas:
        for k, v in m["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
    return sum(m["utterances"] for m in metas), sum(m["hours"] for m in metas) * 3600, dict(sorted(rejected.items()))


def _row(label: str, walls: list[float], clips: int, audio_s: float, **extra) -> dict:
    wall = statistics.median(walls)
    return {"label": label, "clips": clips, "audio_s": round(audio_s, 2), "wall_s": wall,
            "clips_per_s": clips / wall, "audio_s_per_s": audio_s / wall, "runs_wall_s": [round(w, 3) for w in walls],
            **extra}


def run_pairs(work: Path, scale: int, repeats: int) -> list[dict]:
    """Part 1: each pair's archive layout and unpacked layout, imported alternately; ids/texts/audio compared."""
    from polyglot_lion.data.prepare import ImportSpec
    from polyglot_lion.testing.corpora import make_fleurs, make_slr65

    pairs = []
    a = work / "pairs" / "aishell1-speakers"
    build_aishell1_speakers(a / "archives", PAIR_SPEAKERS, max(1, scale // 2))
    unpacked_copy(a / "archives", a / "unpacked", "data_aishell/wav/*.tar.gz")
    pairs.append(("aishell1", None, "AISHELL-1, one tar.gz per speaker", a, "wav/<spk>.tar.gz",
                  "wav/<split>/<spk>/*.wav"))
    f = work / "pairs" / "fleurs-zh"
    make_fleurs(f / "archives", "zh", scale)
    unpacked_copy(f / "archives", f / "unpacked", "data/*/audio/*.tar.gz")
    pairs.append(("fleurs", "zh", "FLEURS zh, one tar.gz per split", f, "audio/<split>.tar.gz", "audio/<split>/*.wav"))
    f8 = work / "pairs" / "fleurs-zh-8s"
    build_fleurs_splits(f8 / "archives", scale)
    unpacked_copy(f8 / "archives", f8 / "unpacked", "data/*/audio/*.tar.gz")
    pairs.append(("fleurs", "zh", "FLEURS zh shape, 5-11 s clips, one tar.gz per split", f8, "audio/<split>.tar.gz",
                  "audio/<split>/*.wav"))
    z = work / "pairs" / "slr65"
    make_slr65(z / "archives", scale)
    unpacked_copy(z / "archives", z / "unpacked", "*.zip")
    pairs.append(("slr65", None, "SLR65, one zip per gender (stored)", z, "ta_in_*.zip", "ta_in_*/*.wav"))

    out = []
    for recipe, language, title, folder, packed_name, unpacked_name in pairs:
        walls: dict[str, list[float]] = {"archives": [], "unpacked": []}
        result: dict[str, tuple] = {}
        for r in range(repeats):
            for layout in (("archives", "unpacked") if r % 2 == 0 else ("unpacked", "archives")):
                spec = ImportSpec(recipe=recipe, language=language or "", input=str(folder / layout))
                wall, metas = timed_import([spec], work / "stores" / f"{folder.name}-{layout}")
                walls[layout].append(wall)
                result[layout] = _totals(metas)
        cpu = {layout: cpu_per_clip(ImportSpec(recipe=recipe, language=language or "", input=str(folder / layout)))
               for layout in walls}
        contents = {layout: store_contents(str(work / "stores" / f"{folder.name}-{layout}")) for layout in walls}
        same = contents["archives"] == contents["unpacked"]
        rows = {layout: _row(f"{title}: {packed_name if layout == 'archives' else unpacked_name}", walls[layout],
                             result[layout][0], result[layout][1], rejected=result[layout][2], **cpu[layout])
                for layout in walls}
        out.append({"recipe": recipe, "language": language, "title": title, "archives": rows["archives"],
                    "unpacked": rows["unpacked"], "same_utterances": same,
                    "utterances_compared": len(contents["archives"]),
                    "ratio_archives_over_unpacked": rows["archives"]["clips_per_s"] / rows["unpacked"]["clips_per_s"],
                    # what the ratio tends to once an import is long enough for its fixed costs not to count
                    "cpu_ratio_archives_over_unpacked": (rows["unpacked"]["task_cpu_ms_per_clip"]
                                                         / rows["archives"]["task_cpu_ms_per_clip"])})
        print(f"pair {title}: archives {rows['archives']['wall_s']:.2f} s, unpacked {rows['unpacked']['wall_s']:.2f} s, "
              f"same utterances: {same}", file=sys.stderr)
    return out


def run_recipes(work: Path, scale: int, repeats: int) -> tuple[list[dict], dict]:
    """Part 2: each of the twelve imports alone, then all twelve in one prepare call."""
    from polyglot_lion.data.prepare import ImportSpec
    from polyglot_lion.testing.corpora import make_paper_downloads

    minis = make_paper_downloads(work / "downloads", scale)
    specs = [ImportSpec(recipe=m.recipe, language=m.language or "", input=m.input) for m in minis]
    walls: list[list[float]] = [[] for _ in minis]
    all_walls: list[float] = []
    found: list[tuple] = [()] * len(minis)
    for r in range(repeats):
        for i, (m, spec) in enumerate(zip(minis, specs)):
            wall, metas = timed_import([spec], work / "stores" / f"recipe-{i}")
            walls[i].append(wall)
            found[i] = _totals(metas)
        wall, metas = timed_import(specs, work / "stores" / "all")
        all_walls.append(wall)
        print(f"recipes repeat {r + 1}/{repeats}: " + ", ".join(f"{m.dataset} {w[-1]:.2f}s" for m, w in zip(minis, walls))
              + f"; all twelve {wall:.2f} s", file=sys.stderr)
    rows = []
    for m, spec, w, (clips, audio_s, rejected) in zip(minis, specs, walls, found):
        expected = clips == m.accepted and rejected == dict(sorted(m.rejected.items()))
        rows.append(_row(m.dataset, w, clips, audio_s, recipe=m.recipe, language=m.language, rejected=rejected,
                         tasks=task_count(spec),
                         expected_accepted=m.accepted, expected_rejected=m.rejected, as_expected=expected))
    clips, audio_s, rejected = _totals(metas)
    return rows, _row("all twelve, one prepare call", all_walls, clips, audio_s, rejected=rejected)


def markdown(result: dict) -> str:
    s = result["setup"]
    out = [f"pair scale {s['pair_scale']}, scale {s['scale']}, median of {s['repeats']} runs, "
           f"one Ray session of {s['num_cpus']} CPUs "
           f"(warm-up import before timing: {s['warmup_s']:.1f} s; ray.init {s['ray_init_s']:.1f} s, not timed)", "",
           "Archives read in place vs the same clips unpacked:", "",
           "| corpus | layout | clips | Ray tasks | wall (s) | clips/s | audio-s/s | archives / unpacked "
           "| CPU ms/clip (of it: archive reads) | CPU ratio | same ids, texts, audio |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in result["pairs"]:
        for layout in ("archives", "unpacked"):
            r = p[layout]
            ratio = f"**{p['ratio_archives_over_unpacked']:.2f}x**" if layout == "archives" else ""
            same = f"{'yes' if p['same_utterances'] else 'NO'} ({p['utterances_compared']})" if layout == "archives" else ""
            cpu = f"{p['cpu_ratio_archives_over_unpacked']:.2f}x" if layout == "archives" else ""
            out.append(f"| {p['title']} | {r['label'].split(': ', 1)[1]} | {r['clips']} | {r['tasks']} | "
                       f"{r['wall_s']:.2f} | {r['clips_per_s']:.0f} | {r['audio_s_per_s']:.0f} | {ratio} | "
                       f"{r['task_cpu_ms_per_clip']:.2f} ({r['archive_read_cpu_ms_per_clip']:.2f}) | {cpu} | {same} |")
    out += ["", "Clips/s per recipe (each import alone; 1 s clips):", "",
            "| recipe | dataset | clips | rejected | Ray tasks | wall (s) | clips/s | as the miniature says |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in result["recipes"] + [result["all_in_one"]]:
        out.append(f"| {r.get('recipe', '-')} | {r['label']} | {r['clips']} | {sum(r['rejected'].values())} | "
                   f"{r.get('tasks', '-')} | {r['wall_s']:.2f} | {r['clips_per_s']:.0f} | "
                   f"{('yes' if r['as_expected'] else 'NO') if 'as_expected' in r else '-'} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair-scale", type=int, default=1600,
                    help="part 1: clips of FLEURS's and SLR65's pairs (AISHELL-1's: 8 speakers of pair-scale/2 clips "
                         "of 3-5 s); default 1600")
    ap.add_argument("--scale", type=int, default=400, help="part 2: good clips added to each miniature; default 400")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each import; the median is reported (default 5)")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray session (default 2)")
    ap.add_argument("--out", default="bench_out/ingest_recipes",
                    help="where ingest_recipes.json is written (corpora and stores are built in OUT/work and removed)")
    args = ap.parse_args()

    import ray

    from polyglot_lion.data.prepare import ImportSpec
    from polyglot_lion.runtime import init_ray
    from polyglot_lion.testing.corpora import make_paper_downloads

    out = Path(args.out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)  # corpora are rebuilt each run: --scale decides them
    t0 = time.perf_counter()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    init_ray(num_cpus=args.num_cpus, object_store_mb=512, quiet=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one "execution finished" line per import otherwise
    ray_init_s = time.perf_counter() - t0
    try:
        # Every recipe once, unscaled: the session's workers start and import their decoders before any timing.
        warmup = [ImportSpec(recipe=m.recipe, language=m.language or "", input=m.input)
                  for m in make_paper_downloads(work / "warmup")]
        warmup_s, _ = timed_import(warmup, work / "stores" / "warmup")
        pairs = run_pairs(work, args.pair_scale, args.repeats)
        recipes, all_in_one = run_recipes(work, args.scale, args.repeats)
    finally:
        ray.shutdown()
    result = {"setup": {"pair_scale": args.pair_scale, "scale": args.scale, "repeats": args.repeats,
                        "num_cpus": args.num_cpus, "cpu_count": os.cpu_count(), "ray_init_s": ray_init_s, "warmup_s": warmup_s,
                        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
              "pairs": pairs, "recipes": recipes, "all_in_one": all_in_one}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_recipes.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)  # the corpora and stores: a few GB at the default pair scale
    print(markdown(result))
    print(f"\nfull results: {out / 'ingest_recipes.json'}")
    bad = [p["title"] for p in pairs if not p["same_utterances"]] + [r["label"] for r in recipes if not r["as_expected"]]
    if bad:
        print(f"FAILED: {', '.join(bad)}: the imports did not give what they should (see the JSON)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
