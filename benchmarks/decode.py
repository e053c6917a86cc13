"""Decoding speed on CPU: the static-cache engine (``inference/engine.py``) vs transformers' ``generate()``
(``Transcriber(engine="hf")``), same model, same clips, same token budget, side by side in one run.

    python benchmarks/decode.py [--batch-sizes 1,16] [--new-tokens 64] [--rounds 5] [--out decode.json]
    python benchmarks/decode.py --smoke      # batch 1 and 2, 8 tokens, no compiled engine: what the tests run

Model: the tiny random Qwen3-ASR built in-process (``build_tiny_model``), fp32. Clips: 16 synthetic tones of 1-3 s
(``testing.tone``), the same for every engine. EOS and the loop guard are off in all engines
(``stop_at_eos=False, stop_on_loop=False``), so every row generates exactly ``--new-tokens`` and the token counts
are equal; the generated ids are compared, engine against engine, and must be identical.

Engines: ``hf`` (the reference), ``eager`` (the engine, decode step in eager mode: the CPU default) and, unless
``--no-compile``, ``compiled`` (``torch.compile`` of the decode step, mode "default"; its warm-up at load is
timed). For each batch size, each engine first runs the batches once (untimed; that call's time is reported as
``first_call_s``), then ``--rounds`` rounds, engines in turn within a round, so a busy shared machine slows all
alike; the median round counts (the best round is shown too: on a busy machine it is the least disturbed).
Three figures per engine:

    tokens/s         generated tokens / wall time of generate_ids (prompt preparation, the audio encoder,
                     prefill and every decode step: what a caller waits for)
    tokens per CPU-s the same tokens / this process's CPU time (one thread): what other work on a shared
                     machine hardly changes (it takes turns on the cores, not CPU time of ours)
    decode tokens/s  the tokens after the first / (time at the full budget - time at a budget of 1): the
                     per-token part alone

Markdown on stdout, then one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch

from polyglot_lion.inference.transcriber import Transcriber
from polyglot_lion.model.tiny import build_tiny_model
from polyglot_lion.testing import TINY_TEXTS, tone

TARGETS = {1: 2.0, 16: 1.5}  # tokens/s of the engine over hf, by batch size (issue 25)


def make_clips(n: int, seed: int) -> list:
    return [tone(1.0 + 2.0 * ((i * 7919 + seed) % 97) / 96, freq=120.0 + 23.0 * i, seed=seed + i)[:, 0]
            for i in range(n)]


def run_batches(tr: Transcriber, batches: list, budget: int) -> tuple[float, list, float]:
    """(wall seconds, ids of every batch, CPU seconds of this process) for generating ``budget`` tokens per row
    for every batch in turn."""
    t0, c0 = time.perf_counter(), time.process_time()
    ids = [tr.generate_ids(batch, None, budget)[0] for batch in batches]
    return time.perf_counter() - t0, ids, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--batch-sizes", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens generated per row, exactly")
    ap.add_argument("--clips", type=int, default=16, help="clips per round (batch 1: one call per clip)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds; the median counts")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a shared machine: 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the model and the clips")
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled engine (it compiles for minutes)")
    ap.add_argument("--out", default=None, help="also write the JSON result to this file")
    ap.add_argument("--smoke", action="store_true", help="batch 1 and 2, 8 tokens, 2 clips, 1 round, no compile")
    args = ap.parse_args()
    if args.smoke:
        args.batch_sizes, args.new_tokens, args.clips, args.rounds, args.no_compile = "1,2", 8, 2, 1, True
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        ap.error(f"--batch-sizes must be comma-separated integers (is {args.batch_sizes!r})")
    problems = [f"--{k.replace('_', '-')} must be > 0 (is {v})" for k, v in vars(args).items()
                if k in ("new_tokens", "clips", "rounds", "threads") and v <= 0]
    problems += [f"--batch-sizes must be between 1 and --clips ({args.clips}) (are {batch_sizes})"
                 for _ in [0] if min(batch_sizes) < 1 or max(batch_sizes) > args.clips]
    if problems:
        ap.error("; ".join(problems))
    torch.set_num_threads(args.threads)

    model, processor = build_tiny_model(TINY_TEXTS, seed=args.seed)
    common = dict(batch_size=max(batch_sizes), stop_at_eos=False, stop_on_loop=False)
    engines = {"hf": Transcriber(copy.deepcopy(model), processor, engine="hf", **common),
               "eager": Transcriber(copy.deepcopy(model), processor, engine="static", compile=None, **common)}
    warm_up_s = None
    if not args.no_compile:
        t0 = time.perf_counter()
        engines["compiled"] = Transcriber(copy.deepcopy(model), processor, engine="static", compile="default",
                                          **common)
        warm_up_s = time.perf_counter() - t0
    clips = make_clips(args.clips, args.seed)

    results, identical = [], True
    for bs in batch_sizes:
        batches = [clips[i:i + bs] for i in range(0, len(clips) - bs + 1, bs)]
        rows = sum(len(b) for b in batches)
        first, ids = {}, {}
        for name, tr in engines.items():
            first[name], ids[name], _ = run_batches(tr, batches, args.new_tokens)
            run_batches(tr, batches, 1)
        same = all(ids[name] == ids["hf"] for name in engines)
        identical &= same
        assert all(len(r) == args.new_tokens for batch in ids["hf"] for r in batch), "a row stopped early"
        full = {name: [] for name in engines}
        one = {name: [] for name in engines}
        cpu = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, tr in engines.items():
                wall, _, cpu_s = run_batches(tr, batches, args.new_tokens)
                full[name].append(wall)
                cpu[name].append(cpu_s)
                one[name].append(run_batches(tr, batches, 1)[0])
        point = {"batch_size": bs, "rows": rows, "tokens": rows * args.new_tokens, "identical": same, "engines": {}}
        for name in engines:
            t_full, t_one = statistics.median(full[name]), statistics.median(one[name])
            point["engines"][name] = {
                "seconds": t_full, "tokens_per_s": rows * args.new_tokens / t_full,
                "best_tokens_per_s": rows * args.new_tokens / min(full[name]),
                "cpu_tokens_per_s": rows * args.new_tokens / statistics.median(cpu[name]),
                "decode_tokens_per_s": rows * (args.new_tokens - 1) / (t_full - t_one) if t_full > t_one else None,
                "first_call_s": first[name], "rounds_s": full[name]}
        hf = point["engines"]["hf"]
        for name in engines:
            e = point["engines"][name]
            e["speedup"] = e["tokens_per_s"] / hf["tokens_per_s"]
            e["best_speedup"] = e["best_tokens_per_s"] / hf["best_tokens_per_s"]
            e["cpu_speedup"] = e["cpu_tokens_per_s"] / hf["cpu_tokens_per_s"]
            e["decode_speedup"] = (e["decode_tokens_per_s"] / hf["decode_tokens_per_s"]
                                   if e["decode_tokens_per_s"] and hf["decode_tokens_per_s"] else None)
        results.append(point)

    print(f"## decode.py: tiny Qwen3-ASR, fp32, CPU ({args.threads} thread(s)), {args.new_tokens} tokens per row, "
          f"EOS and loop guard off, median of {args.rounds} round(s)\n")
    print("| batch | engine | tokens/s | x hf | best round tokens/s | x hf | tokens per CPU-s | x hf | "
          "decode tokens/s | x hf | first call s | outputs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in results:
        for name, e in p["engines"].items():
            decode = (f"{e['decode_tokens_per_s']:.0f} | {e['decode_speedup']:.2f}" if e["decode_speedup"]
                      else "- | -")  # too few tokens to tell the decode steps from the prefill
            print(f"| {p['batch_size']} | {name} | {e['tokens_per_s']:.0f} | {e['speedup']:.2f} | "
                  f"{e['best_tokens_per_s']:.0f} | {e['best_speedup']:.2f} | {e['cpu_tokens_per_s']:.0f} | "
                  f"{e['cpu_speedup']:.2f} | {decode} | "
                  f"{e['first_call_s']:.2f} | "
                  f"{'identical' if p['identical'] else 'DIFFER'} |")
    if warm_up_s is not None:
        print(f"\ncompiled engine: load with warm-up {warm_up_s:.1f} s")
    verdicts = {}
    for p in results:
        if p["batch_size"] in TARGETS:
            best = max((n for n in p["engines"] if n != "hf"), key=lambda n: p["engines"][n]["speedup"])
            verdicts[p["batch_size"]] = {"target": TARGETS[p["batch_size"]], "best": best,
                                         "speedup": p["engines"][best]["speedup"],
                                         "met": p["engines"][best]["speedup"] >= TARGETS[p["batch_size"]]}
            v = verdicts[p["batch_size"]]
            print(f"batch {p['batch_size']}: {v['best']} {v['speedup']:.2f}x hf (target >= {v['target']}x): "
                  + ("met" if v["met"] else "NOT met"))
    out = {"benchmark": "decode", "smoke": args.smoke, "threads": args.threads, "new_tokens": args.new_tokens,
           "clips": args.clips, "rounds": args.rounds, "warm_up_s": warm_up_s, "identical": identical,
           "load_average": os.getloadavg(), "results": results, "targets": verdicts}
    line = json.dumps(out)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    if not identical:
        raise SystemExit("the engines' outputs differ")


if __name__ == "__main__":
    main()
