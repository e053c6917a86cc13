"""Do two ``gpu_train.py`` runs train the same? Their per-step losses and gradient norms side by side.

    python benchmarks/compare_steps.py REFERENCE.json CANDIDATE.json [--rtol-loss 0.01] [--rtol-grad-norm 0.05]

For a variant that must not change the numbers (CUDA graphs against plain compiled layers, same seed, data and
steps): exits 1 when a timed step's loss or gradient norm differs by more than the tolerance, 2 when the runs
are not comparable (different steps, batch layout or data), 0 otherwise. The tolerances leave room for bf16 and
for kernels that are not deterministic (cuDNN attention's backward); a gradient that is lost or counted twice
(cudagraph trees overwriting an accumulated ``.grad``, pytorch/pytorch#169545) moves the norm by far more.
"""

from __future__ import annotations

import argparse
import json
import sys

# what must match for the two runs to have seen the same steps (top-level keys, and the loss in "variant")
SAME = ("size", "batch_size", "grad_accum", "timed_steps", "warmup_steps", "pool_steps", "clip_seconds")


def load(path: str) -> dict:
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"compare_steps: {path} is empty (did the benchmark fail?)")
    result = json.loads(lines[-1])
    for key in ("losses", "grad_norms"):
        if key not in result:
            raise SystemExit(f"compare_steps: {path} has no {key!r} (a gpu_train.py result from before 2026-11-28?)")
    return result


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def compare(ref: dict, cand: dict, rtol_loss: float, rtol_grad_norm: float) -> tuple[int, list[str]]:
    """(exit status, report lines)."""
    pairs = {k: (ref.get(k), cand.get(k)) for k in SAME}
    pairs["variant.loss"] = (ref.get("variant", {}).get("loss"), cand.get("variant", {}).get("loss"))
    differ = [f"not comparable: {k} is {a!r} against {b!r}" for k, (a, b) in pairs.items() if a != b]
    if differ:
        return 2, differ
    lines = [f"{'step':>4}  {'loss ref':>10} {'loss cand':>10} {'rel':>8}   {'|g| ref':>10} {'|g| cand':>10} {'rel':>8}"]
    worst_loss = worst_norm = 0.0
    for i, (la, lb, ga, gb) in enumerate(zip(ref["losses"], cand["losses"], ref["grad_norms"], cand["grad_norms"])):
        rl, rg = rel(la, lb), rel(ga, gb)
        worst_loss, worst_norm = max(worst_loss, rl), max(worst_norm, rg)
        lines.append(f"{i:>4}  {la:>10.5f} {lb:>10.5f} {rl:>8.2e}   {ga:>10.5f} {gb:>10.5f} {rg:>8.2e}")
    ok = worst_loss <= rtol_loss and worst_norm <= rtol_grad_norm
    lines.append(f"largest relative difference: loss {worst_loss:.2e} (tolerance {rtol_loss:g}), gradient norm "
                 f"{worst_norm:.2e} (tolerance {rtol_grad_norm:g}): {'same training' if ok else 'DIFFERENT'}")
    if ref.get("step_s_median") and cand.get("step_s_median"):  # results from before 2026-11-28 lack them
        lines.append(f"median step: ref {ref['step_s_median']:.4f} s, cand {cand['step_s_median']:.4f} s "
                     f"(cand {ref['step_s_median'] / cand['step_s_median']:.2f}x the speed); MFU ref "
                     f"{ref.get('mfu') or 0:.1%}, cand {cand.get('mfu') or 0:.1%} (mean over the timed steps)")
    for name, r in (("ref", ref), ("cand", cand)):  # a note, not a failure: the numbers may still be the same
        if r.get("variant", {}).get("compile_mode") == "reduce-overhead" and r.get("cudagraph_skips"):
            lines.append(f"note: {name} ran {r['cudagraph_skips']} compiled graphs without a CUDA graph (on "
                         f"{r.get('device')}): its timing is not all CUDA graphs'")
    return (0 if ok else 1), lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("reference", help="gpu_train.py --out JSON of the reference run")
    ap.add_argument("candidate", help="gpu_train.py --out JSON of the run that must train the same")
    ap.add_argument("--rtol-loss", type=float, default=0.01, help="largest relative loss difference per step")
    ap.add_argument("--rtol-grad-norm", type=float, default=0.05,
                    help="largest relative gradient-norm difference per step")
    args = ap.parse_args()
    status, lines = compare(load(args.reference), load(args.candidate), args.rtol_loss, args.rtol_grad_norm)
    print(f"compare_steps: {args.reference} (ref) against {args.candidate} (cand)")
    print("\n".join(lines))
    sys.exit(status)


if __name__ == "__main__":
    main()
