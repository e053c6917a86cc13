"""Serving under load, two parts in one run. The sweep: the Serve app with `@serve.batch` batching vs the same app
with max_batch_size=1, under N = 1, 8 and 32 concurrent HTTP clients on localhost, plus 32 clients with 20%
hostile requests. The mixed load: clips of 1-20 s at 32 clients, continuous batching (the default) vs request
batching (`@serve.batch`).

    python benchmarks/serve_load.py [--duration 15] [--repeats 3] [--batch-size 16] [--max-new-tokens 20]
    python benchmarks/serve_load.py --parts mixed  # the mixed load alone (--mixed-duration 30, 3 repeats)
    python benchmarks/serve_load.py --quick        # 1 sweep, 5 s a point: a smoke run of the whole thing
    python benchmarks/serve_load.py --smoke        # the smallest run (the test's): 1 sweep, 1.5-3 s a point, 8 clients

One process starts a local Ray (2 CPUs) and Serve on 127.0.0.1. The sweep deploys two apps side by side from the
same tiny random Qwen3-ASR checkpoint (`save_tiny_checkpoint`, a folder under bench_out/serve_load/), both with
request batching: `batched` (/batched, max_batch_size=B, batch_wait_timeout_s=W) and `unbatched` (/unbatched,
max_batch_size=1). Each has
one replica with num_cpus=1 (so torch runs one intra-op thread). The load goes to one app at a time; the other
sits idle. For each point, N asyncio clients (one httpx.AsyncClient, one connection per client) send requests
back to back for --duration seconds: a multipart upload of a 1-3 s 16 kHz WAV (`audio_bytes`, a pool of 64
clips, seeded). Requests started in the first --warmup seconds are not measured; throughput counts the
requests that finished inside the measured window; latencies are of the requests started in it. The sweep over
all points runs --repeats times, interleaved; a row gives the median throughput of its repeats and latency
percentiles over all their requests. The machine's 1-minute load average is recorded with each point.

The stock tiny random model repeats one token whatever it hears, so its cost per batch is not set by the audio:
the loop guard ends its sequences after about 12 tokens, within the fixed budget both apps get (--max-new-tokens,
a ServeSettings field).

The hostile run (batched app, 32 clients): 20% of requests, chosen at random, are one of (at random) garbage
bytes, an empty file, response_format=srt with a good WAV, an unknown `model`, a body that is not multipart, or
a decompression bomb (`testing.hostile.bomb_flac`: 430 KB of FLAC declaring 590 s x 192 kHz x 2 channels, the
probe's); each must get a 4xx with OpenAI's error body, every valid request a 200, and the valid requests' p99
stay within 1.5x of the clean run's at 32 clients.

The mixed load (--parts mixed): two other apps, deployed once the sweep's are deleted (two replicas of 1 CPU
at a time): `continuous` (batching=continuous, B slots) and `request` (batching=request, B clips a batch, W),
both with a token budget by duration (16 + 15 per second of audio, no fixed --max-new-tokens) and EOS and the
loop guard off (ServeSettings stop_at_eos / stop_on_loop), so that every sequence runs its whole budget: a
random model's decoding then costs what a trained model's does, in proportion to its clip. The pool: 64 WAV
clips with durations log-uniform in 1-20 s (seeded: 1.0-18.9 s, a third of them 3 s or shorter), each client
sending the same seeded sequence of clips to both apps. Reported per app:
requests/s and audio-s/s (median of the repeats), p50/p95/p99 latency over all requests, p50 of the short
clips (<= --short-s) and of the others, failed valid requests, mean rows decoded together (continuous: rows
per round of decode steps; request: clips per batch). The two apps alternate within each repeat.
Results: --out (JSON), --png (the sweep's throughput and p50/p99 latency vs clients) and stdout (Markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import sys
import time
from pathlib import Path

WORK = Path("bench_out/serve_load")
CLIENTS = (1, 8, 32)
PARTS = ("sweep", "mixed")
MIXED_APPS = ("request", "continuous")
MALFORMED = ("garbage", "empty", "bad_format", "unknown_model", "not_multipart", "bomb")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a list; NaN for an empty one (a point where nothing was measured:
    a short run on a busy machine)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]


def make_clips(n: int = 64, seed: int = 0) -> list[tuple[float, bytes]]:
    """``n`` WAV clips of 1-3 s (16 kHz mono), seeded: (seconds, bytes)."""
    import numpy as np

    from polyglot_lion.testing import audio_bytes

    rng = np.random.default_rng(seed)
    return [(s, audio_bytes(s, seed=i)) for i, s in enumerate(np.round(rng.uniform(1.0, 3.0, n), 2).tolist())]


def make_mixed_clips(n: int = 64, seed: int = 1, low_s: float = 1.0, high_s: float = 20.0) -> list[tuple[float, bytes]]:
    """``n`` WAV clips with durations log-uniform in ``low_s``..``high_s`` (16 kHz mono, 0.1 s steps), seeded."""
    import numpy as np

    from polyglot_lion.testing import audio_bytes

    rng = np.random.default_rng(seed)
    seconds = np.round(np.exp(rng.uniform(np.log(low_s), np.log(high_s), n)), 1).tolist()
    return [(s, audio_bytes(s, seed=100 + i)) for i, s in enumerate(seconds)]


# --- the load -------------------------------------------------------------------------------------------------

def _openai_error(r) -> bool:
    try:
        return set(r.json()["error"]) == {"message", "type", "param", "code"}
    except (ValueError, KeyError, TypeError):
        return False


async def _client(http, url: str, clips: list, seed: int, t_end: float, bad_share: float, log: list,
                  bomb: bytes = b"") -> None:
    import random

    rng = random.Random(seed)
    while time.perf_counter() < t_end:
        seconds, wav = clips[rng.randrange(len(clips))]
        kind = rng.choice(MALFORMED) if bad_share and rng.random() < bad_share else "valid"
        data = {"model": "polyglot-lion"}
        payload = wav
        if kind == "garbage":
            payload = rng.randbytes(rng.randrange(200, 20_000))
        elif kind == "empty":
            payload = b""
        elif kind == "bad_format":
            data["response_format"] = "srt"
        elif kind == "unknown_model":
            data["model"] = "whisper-1"
        elif kind == "bomb":
            payload = bomb
        t0 = time.perf_counter()
        try:
            if kind == "not_multipart":
                r = await http.post(url, content=wav, headers={"Content-Type": "audio/wav"})
            else:
                r = await http.post(url, files={"file": ("a.wav", payload, "audio/wav")}, data=data)
            status, batch = r.status_code, int(r.headers.get("x-batch-size", 0))
            ok = (status == 200 and isinstance(r.json().get("text"), str) if kind == "valid"
                  else 400 <= status < 500 and _openai_error(r))
            error = None if ok else f"{status}: {r.text[:200]}"
        except Exception as e:  # a timeout or a dropped connection is a failed request, not a crashed run
            status, batch, ok, error = 0, 0, False, f"{type(e).__name__}: {e}"[:200]
        log.append({"kind": kind, "start": t0, "end": time.perf_counter(), "status": status, "ok": ok,
                    "batch": batch, "audio_s": seconds, "error": error})


async def _load(url: str, clients: int, clips: list, duration: float, bad_share: float, seed: int,
                bomb: bytes = b"") -> tuple:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    log: list[dict] = []
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        t0 = time.perf_counter()
        t_end = t0 + duration
        await asyncio.gather(*(_client(http, url, clips, seed * 1000 + i, t_end, bad_share, log, bomb)
                               for i in range(clients)))
    return t0, t_end, log


def run_point(base: str, app: str, clients: int, clips: list, duration: float, warmup: float,
              bad_share: float = 0.0, seed: int = 0, bomb: bytes = b"") -> dict:
    """N clients against one app for ``duration`` s: what the measured window saw (``summarise`` pools repeats)."""
    import httpx

    before = httpx.get(f"{base}/{app}/v1/stats", timeout=10).json()
    t0, t_end, log = asyncio.run(_load(f"{base}/{app}/v1/audio/transcriptions", clients, clips, duration,
                                       bad_share, seed, bomb))
    after = httpx.get(f"{base}/{app}/v1/stats", timeout=10).json()
    t_w = t0 + warmup
    measured = [x for x in log if x["start"] >= t_w and x["kind"] == "valid"]
    done = [x for x in measured if x["ok"] and x["end"] <= t_end]
    bad = [x for x in log if x["kind"] != "valid"]
    return {
        "window_s": t_end - t_w, "done": len(done), "done_audio_s": sum(x["audio_s"] for x in done),
        "latencies_ms": [1000 * (x["end"] - x["start"]) for x in measured if x["ok"]],
        "audio_s": [x["audio_s"] for x in measured if x["ok"]],  # of each latency above
        "valid": sum(x["kind"] == "valid" for x in log),
        "valid_failed": sum(x["kind"] == "valid" and not x["ok"] for x in log),
        "batch_sizes": {k: v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()},
        "malformed": {kind: {"sent": sum(x["kind"] == kind for x in bad),
                             "answered_4xx": sum(x["kind"] == kind and x["ok"] for x in bad),
                             "statuses": sorted({x["status"] for x in bad if x["kind"] == kind})} for kind in MALFORMED},
        "errors": [x["error"] for x in log if not x["ok"]][:10],
        "loadavg_1m": os.getloadavg()[0],  # the machine is shared: the load from others is part of the result
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summarise(app: str, clients: int, bad_share: float, points: list[dict]) -> dict:
    """One table row from the repeats of a point: median throughput, latency percentiles over all their requests."""
    lat = [x for p in points for x in p["latencies_ms"]]
    sizes: dict[int, int] = {}
    for p in points:
        for k, v in p["batch_sizes"].items():
            sizes[int(k)] = sizes.get(int(k), 0) + v
    rps = [p["done"] / p["window_s"] for p in points]
    out = {
        "app": app, "clients": clients, "malformed_share": bad_share, "repeats": len(points),
        "throughput_rps": statistics.median(rps), "runs_throughput_rps": [round(x, 2) for x in rps],
        "audio_s_per_s": statistics.median(p["done_audio_s"] / p["window_s"] for p in points),
        "measured_requests": len(lat), "valid_requests": sum(p["valid"] for p in points),
        "valid_failed": sum(p["valid_failed"] for p in points),
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
        "max_ms": max(lat, default=float("nan")), "mean_batch": sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values())),
        "batch_sizes": {str(k): v for k, v in sorted(sizes.items()) if v},
        "loadavg_1m": [round(p["loadavg_1m"], 1) for p in points],
        "errors": [e for p in points for e in p["errors"]][:10],
    }
    out["p99_over_p50"] = ratio(out["p99_ms"], out["p50_ms"])
    if bad_share:
        out["malformed"] = {kind: {"sent": sum(p["malformed"][kind]["sent"] for p in points),
                                   "answered_4xx": sum(p["malformed"][kind]["answered_4xx"] for p in points),
                                   "statuses": sorted({s for p in points for s in p["malformed"][kind]["statuses"]})}
                            for kind in MALFORMED}
        out["malformed_sent"] = sum(v["sent"] for v in out["malformed"].values())
        out["malformed_4xx"] = sum(v["answered_4xx"] for v in out["malformed"].values())
    return out


def summarise_mixed(app: str, clients: int, short_s: float, points: list[dict]) -> dict:
    """One row of the mixed table: ``summarise``'s figures, and p50 of the clips up to ``short_s`` and above it."""
    out = summarise(app, clients, 0.0, points)
    pairs = [(a, ms) for p in points for a, ms in zip(p["audio_s"], p["latencies_ms"])]
    short = [ms for a, ms in pairs if a <= short_s]
    longer = [ms for a, ms in pairs if a > short_s]
    out.update(short_requests=len(short), short_p50_ms=percentile(short, 50), long_p50_ms=percentile(longer, 50))
    return out


# --- the driver -----------------------------------------------------------------------------------------------

def wait_healthy(base: str, apps: list[str], timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    pending = list(apps)
    while pending:
        if time.time() > deadline:
            raise RuntimeError(f"apps {pending} not healthy after {timeout:.0f} s")
        try:
            pending = [a for a in pending if httpx.get(f"{base}/{a}/healthz", timeout=2).status_code != 200]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def deploy(base: str, apps: dict[str, dict]) -> None:
    """Deploy ``apps`` (name: ServeSettings fields; one replica of 1 CPU each, at /name) together, and wait until
    each answers /healthz. One ``serve.run_many``: the replicas start and load the model side by side, not one
    app after the other."""
    from ray import serve

    from polyglot_lion.serving.app import build_app

    serve.run_many([serve.RunTarget(build_app(settings, {"ray_actor_options": {"num_cpus": 1}}), name=name,
                                    route_prefix=f"/{name}") for name, settings in apps.items()])
    wait_healthy(base, list(apps))


def delete(apps, timeout: float = 120) -> None:
    """Delete the apps named in ``apps`` together (their replicas shut down side by side) and wait until all are
    gone, so that their CPUs are free for the next apps."""
    from ray import serve

    names = list(apps)
    for name in names:
        serve.delete(name, _blocking=False)
    deadline = time.time() + timeout
    while set(names) & set(serve.status().applications):
        if time.time() > deadline:
            raise RuntimeError(f"apps {names} not deleted after {timeout:.0f} s")
        time.sleep(0.2)


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for app, color in (("batched", "tab:blue"), ("unbatched", "tab:orange")):
        rs = sorted((r for r in runs if r["app"] == app and not r["malformed_share"]), key=lambda r: r["clients"])
        n = [r["clients"] for r in rs]
        ax1.plot(n, [r["throughput_rps"] for r in rs], "o-", color=color, label=app)
        ax2.plot(n, [r["p50_ms"] for r in rs], "o-", color=color, label=f"{app} p50")
        ax2.plot(n, [r["p99_ms"] for r in rs], "s--", color=color, label=f"{app} p99")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("requests/s")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_sweep(args, base: str, model: Path, clips: list, bomb: bytes) -> dict:
    """The sweep: batched vs unbatched (both request batching) at 1, 8, 32 clients, and the hostile run."""
    t0 = time.perf_counter()
    common = {"model": str(model.resolve()), "max_new_tokens": args.max_new_tokens, "batching": "request"}
    apps = {"batched": dict(common, max_batch_size=args.batch_size, batch_wait_timeout_s=args.batch_wait),
            "unbatched": dict(common, max_batch_size=1, batch_wait_timeout_s=0.0)}
    deploy(base, apps)
    startup_s = time.perf_counter() - t0
    print(f"sweep: 2 apps up in {startup_s:.1f} s", file=sys.stderr)

    points = [(app, n, 0.0) for n in CLIENTS for app in ("unbatched", "batched")]
    points.append(("batched", 32, args.malformed_share))
    raw: dict[tuple, list[dict]] = {p: [] for p in points}
    try:
        for rep in range(args.repeats):  # interleaved, so slow drift on the shared machine hits both apps alike
            for app, n, bad_share in points:
                r = run_point(base, app, n, clips, args.duration, args.warmup, bad_share, seed=rep * 100 + n,
                              bomb=bomb)
                raw[(app, n, bad_share)].append(r)
                print(f"repeat {rep + 1}/{args.repeats}: {app} x{n}{' malformed' if bad_share else ''}: "
                      f"{r['done'] / r['window_s']:.1f} req/s, valid failed {r['valid_failed']}, "
                      f"load {r['loadavg_1m']:.1f}", file=sys.stderr)
    finally:
        delete(apps)
    runs = [summarise(app, n, bad_share, raw[(app, n, bad_share)]) for app, n, bad_share in points]

    by = {(r["app"], r["clients"]): r for r in runs if not r["malformed_share"]}
    bad = runs[-1]
    ratios = {str(n): ratio(by[("batched", n)]["throughput_rps"], by[("unbatched", n)]["throughput_rps"])
              for n in CLIENTS}
    ratios_32 = [ratio(b, u) for b, u in zip(by[("batched", 32)]["runs_throughput_rps"],
                                             by[("unbatched", 32)]["runs_throughput_rps"])]
    b32 = by[("batched", 32)]
    targets = {
        "batched_32_at_least_3x_unbatched": ratios["32"] >= 3,
        "zero_failed_valid_requests": all(r["valid_failed"] == 0 for r in runs),
        "every_malformed_request_4xx": bad["malformed_4xx"] == bad["malformed_sent"] > 0,
        "batched_32_p99_within_3x_p50": b32["p99_over_p50"] <= 3,
        "malformed_run_p99_within_3x_p50": bad["p99_over_p50"] <= 3,
        "hostile_run_valid_p99_within_1.5x_clean": bad["p99_ms"] <= 1.5 * b32["p99_ms"],
    }
    knobs = {"model": "tiny random Qwen3-ASR (save_tiny_checkpoint, seed 0)", "ray_num_cpus": 2,
             "replica_num_cpus": 1, "batching": "request", "batch_size": args.batch_size,
             "batch_wait_timeout_s": args.batch_wait, "max_new_tokens": args.max_new_tokens,
             "duration_s": args.duration, "warmup_s": args.warmup, "repeats": args.repeats,
             "clip_s": [min(c[0] for c in clips), max(c[0] for c in clips)],
             "malformed_share": args.malformed_share, "deployment": "two apps side by side, loaded one at a time"}
    plot(runs, Path(args.png), f"tiny model, {args.max_new_tokens} new tokens, B={args.batch_size}, "
                               f"W={args.batch_wait * 1000:.0f} ms, 1 replica x 1 CPU, {args.duration:.0f} s a point, "
                               f"{args.repeats} sweep(s): median req/s, pooled latencies")

    print(f"\nsweep: clips 1-3 s WAV; request batching, B={args.batch_size}, W={args.batch_wait * 1000:.0f} ms, "
          f"{args.max_new_tokens} new tokens a batch; {args.duration:.0f} s a point, first {args.warmup:g} s not "
          f"measured; {args.repeats} sweep(s): median req/s, latency percentiles over all sweeps' requests\n")
    print("| app | clients | req/s | audio-s/s | p50 (ms) | p95 (ms) | p99 (ms) | p99/p50 | mean batch | "
          "valid failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        label = r["app"] + (f", {r['malformed_share']:.0%} malformed" if r["malformed_share"] else "")
        print(f"| {label} | {r['clients']} | {r['throughput_rps']:.1f} | {r['audio_s_per_s']:.1f} | "
              f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['p99_over_p50']:.2f} | "
              f"{r['mean_batch']:.1f} | {r['valid_failed']}/{r['valid_requests']} |")
    print("\nbatched / unbatched throughput: " + ", ".join(f"{n} clients {ratios[str(n)]:.2f}x" for n in CLIENTS)
          + f" (32 clients, per sweep: {', '.join(f'{x:.2f}x' for x in ratios_32)})")
    print(f"hostile run: valid p99 {bad['p99_ms']:.0f} ms vs clean {b32['p99_ms']:.0f} ms at 32 clients "
          f"({ratio(bad['p99_ms'], b32['p99_ms']):.2f}x)")
    print(f"malformed run: {bad['malformed_4xx']}/{bad['malformed_sent']} malformed answered 4xx ("
          + ", ".join(f"{k} {v['answered_4xx']}/{v['sent']} {v['statuses']}" for k, v in bad["malformed"].items())
          + f"); valid failed {bad['valid_failed']}/{bad['valid_requests']}")
    print("sweep targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    return {"knobs": knobs, "startup_s": startup_s, "runs": runs, "throughput_ratio_batched_vs_unbatched": ratios,
            "ratio_32_per_repeat": ratios_32, "targets": targets}


def run_mixed(args, base: str, model: Path) -> dict:
    """The mixed load: continuous vs request batching, clips of 1-20 s, every sequence to its whole budget."""
    t0 = time.perf_counter()
    clips = make_mixed_clips(args.mixed_clips)
    common = {"model": str(model.resolve()), "max_batch_size": args.batch_size, "max_audio_s": 30.0,
              "stop_at_eos": False, "stop_on_loop": False}
    apps = {"request": dict(common, batching="request", batch_wait_timeout_s=args.batch_wait),
            "continuous": dict(common, batching="continuous")}
    deploy(base, apps)
    startup_s = time.perf_counter() - t0
    print(f"mixed: 2 apps up in {startup_s:.1f} s", file=sys.stderr)
    n = args.mixed_clients
    raw: dict[str, list[dict]] = {app: [] for app in MIXED_APPS}
    try:
        for rep in range(args.mixed_repeats):
            for app in MIXED_APPS:  # the same clients, seeds and so clip sequences for both apps
                r = run_point(base, app, n, clips, args.mixed_duration, args.mixed_warmup, seed=1000 + rep)
                raw[app].append(r)
                print(f"mixed repeat {rep + 1}/{args.mixed_repeats}: {app} x{n}: {r['done'] / r['window_s']:.2f} "
                      f"req/s, valid failed {r['valid_failed']}, load {r['loadavg_1m']:.1f}", file=sys.stderr)
    finally:
        delete(apps)
    runs = {app: summarise_mixed(app, n, args.short_s, raw[app]) for app in MIXED_APPS}
    c, q = runs["continuous"], runs["request"]
    rps_ratio = ratio(c["throughput_rps"], q["throughput_rps"])
    short_ratio = ratio(q["short_p50_ms"], c["short_p50_ms"])
    per_repeat = [ratio(a, b) for a, b in zip(c["runs_throughput_rps"], q["runs_throughput_rps"])]
    targets = {"continuous_at_least_1.5x_requests_per_s": rps_ratio >= 1.5,
               "continuous_short_p50_at_least_2x_lower": short_ratio >= 2,
               "zero_failed_valid_requests": c["valid_failed"] == q["valid_failed"] == 0}
    durations = [x[0] for x in clips]
    knobs = {"model": "tiny random Qwen3-ASR (save_tiny_checkpoint, seed 0)", "ray_num_cpus": 2,
             "replica_num_cpus": 1, "clients": n, "batch_size_or_slots": args.batch_size,
             "batch_wait_timeout_s": args.batch_wait, "max_queue": 64, "token_budget": "16 + 15/s of audio",
             "eos_and_loop_guard": "off", "duration_s": args.mixed_duration, "warmup_s": args.mixed_warmup,
             "repeats": args.mixed_repeats, "clips": len(clips), "clip_s": [min(durations), max(durations)],
             "clip_s_mean": statistics.mean(durations), "short_s": args.short_s,
             "short_share": sum(d <= args.short_s for d in durations) / len(durations),
             "deployment": "two apps side by side, loaded one at a time"}

    print(f"\nmixed load: {n} clients, {len(clips)} clips of {min(durations):g}-{max(durations):g} s (log-uniform, "
          f"mean {knobs['clip_s_mean']:.1f} s, {knobs['short_share']:.0%} <= {args.short_s:g} s), budget 16 + 15 "
          f"tokens/s, EOS and loop guard off; B={args.batch_size} (slots or clips a batch), W="
          f"{args.batch_wait * 1000:.0f} ms; {args.mixed_duration:g} s a point, first {args.mixed_warmup:g} s not "
          f"measured; {args.mixed_repeats} repeat(s): median req/s, latency percentiles over all repeats' requests\n")
    print("| batching | req/s | audio-s/s | p50 (ms) | p95 (ms) | p99 (ms) | short p50 (ms) | long p50 (ms) | "
          "mean rows | valid failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for app in MIXED_APPS:
        r = runs[app]
        label = "continuous (decode loop)" if app == "continuous" else "request (@serve.batch)"
        print(f"| {label} | {r['throughput_rps']:.2f} | {r['audio_s_per_s']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['short_p50_ms']:.0f} ({r['short_requests']}) | "
              f"{r['long_p50_ms']:.0f} | {r['mean_batch']:.1f} | {r['valid_failed']}/{r['valid_requests']} |")
    print(f"\ncontinuous / request: {rps_ratio:.2f}x requests/s (per repeat: "
          f"{', '.join(f'{x:.2f}x' for x in per_repeat)}), short-clip p50 {short_ratio:.2f}x lower")
    print("mixed targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    return {"knobs": knobs, "startup_s": startup_s, "runs": list(runs.values()),
            "requests_per_s_ratio": rps_ratio, "ratio_per_repeat": per_repeat, "short_p50_ratio": short_ratio,
            "targets": targets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="sweep,mixed", help="comma-separated, of sweep and mixed (default both)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of load per sweep point (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="first seconds of each point not measured (default 3)")
    ap.add_argument("--batch-size", type=int, default=16,
                    help="max_batch_size, B: the batched apps' clips a batch, the continuous app's slots (default 16)")
    ap.add_argument("--batch-wait", type=float, default=0.01,
                    help="batch_wait_timeout_s of the request-batching apps, W (default 0.01)")
    ap.add_argument("--max-new-tokens", type=int, default=20,
                    help="the sweep's fixed token budget a batch (default 20)")
    ap.add_argument("--malformed-share", type=float, default=0.2, help="share of malformed requests (default 0.2)")
    ap.add_argument("--repeats", type=int, default=3, help="sweeps, interleaved; median req/s, pooled latencies")
    ap.add_argument("--mixed-clients", type=int, default=32, help="concurrent clients of the mixed load (default 32)")
    ap.add_argument("--mixed-clips", type=int, default=64, help="clips in the mixed pool (default 64)")
    ap.add_argument("--mixed-duration", type=float, default=30.0, help="seconds of mixed load per app (default 30)")
    ap.add_argument("--mixed-warmup", type=float, default=5.0, help="first seconds of it not measured (default 5)")
    ap.add_argument("--mixed-repeats", type=int, default=3, help="repeats of the mixed load, alternating (default 3)")
    ap.add_argument("--short-s", type=float, default=3.0, help="clips up to this long are the short ones (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 sweep, 5 s a point, 1.5 s warmup; mixed: 1 repeat of 15 s")
    ap.add_argument("--smoke", action="store_true",
                    help="the smallest run: 1 sweep of 1.5 s points; mixed: 8 clients, 16 clips, 1 repeat of 3 s")
    ap.add_argument("--out", default="bench_out/serve_load.json", help="JSON results")
    ap.add_argument("--png", default="bench_out/serve_load.png", help="plot of throughput and latency vs clients")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.repeats = 5.0, 1.5, 1
        args.mixed_duration, args.mixed_warmup, args.mixed_repeats = 15.0, 3.0, 1
    if args.smoke:
        args.duration, args.warmup, args.repeats = 1.5, 0.5, 1
        args.mixed_clients, args.mixed_clips, args.mixed_repeats = 8, 16, 1
        args.mixed_duration, args.mixed_warmup = 3.0, 1.0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    problems = []
    if not parts or any(p not in PARTS for p in parts):
        problems.append(f"--parts must name some of {list(PARTS)} (is {args.parts!r})")
    problems += [f"--{n.replace('_', '-')} must be >= 1 (is {getattr(args, n)})"
                 for n in ("batch_size", "max_new_tokens", "repeats", "mixed_clients", "mixed_clips", "mixed_repeats")
                 if getattr(args, n) < 1]
    if not 0 <= args.warmup < args.duration:
        problems.append(f"--warmup must be in [0, --duration) (is {args.warmup}, duration {args.duration})")
    if not 0 <= args.mixed_warmup < args.mixed_duration:
        problems.append(f"--mixed-warmup must be in [0, --mixed-duration) (is {args.mixed_warmup}, "
                        f"mixed duration {args.mixed_duration})")
    if not 0 < args.malformed_share < 1:
        problems.append(f"--malformed-share must be in (0, 1) (is {args.malformed_share})")
    if args.batch_wait < 0:
        problems.append(f"--batch-wait must be >= 0 (is {args.batch_wait})")
    if not 1 <= args.short_s < 20:
        problems.append(f"--short-s must be in [1, 20) (is {args.short_s})")
    if problems:
        ap.error("; ".join(problems))

    import ray
    from ray import serve

    from polyglot_lion.model.tiny import save_tiny_checkpoint
    from polyglot_lion.runtime import init_ray
    from polyglot_lion.testing import TINY_TEXTS
    from polyglot_lion.testing.hostile import bomb_flac

    model = WORK / "model"
    if not (model / "config.json").exists():
        save_tiny_checkpoint(str(model), TINY_TEXTS, 0)

    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_mb=256, quiet=True)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    print(f"Ray + Serve up in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    summary: dict = {"parts": parts}
    try:
        if "sweep" in parts:
            summary.update(run_sweep(args, base, model, make_clips(), bomb_flac()))
        if "mixed" in parts:
            summary["mixed"] = run_mixed(args, base, model)
    finally:
        serve.shutdown()
        ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
