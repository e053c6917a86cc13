"""The model commands: ``convert`` (original checkpoint layout -> transformers) and ``train``, each parser beside
its handler, and the line ``train`` prints on utterances a run skipped."""

from __future__ import annotations

import json

from ..config import describe, load_config
from ..model.convert import convert_checkpoint


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert an original-layout Qwen3-ASR checkpoint (thinker.*) to transformers format",
                       description="Original Qwen/Qwen3-ASR-* and Polyglot-Lion checkpoints (thinker.* weights, "
                                   "thinker_config) load in transformers as RANDOM weights; this writes a "
                                   "transformers-format copy whose weights equal the originals.")
    p.add_argument("src", help="original-format checkpoint folder")
    p.add_argument("dst", help="new folder for the transformers-format checkpoint (must not exist or be empty)")


def cmd_convert(args) -> int:
    stats = convert_checkpoint(args.src, args.dst)
    print(f"converted {stats['weights']} tensors ({stats['renamed']} renamed) -> {args.dst}; "
          f"load it with polyglot_lion.model.loading.load_model('{args.dst}')")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune Qwen3-ASR with Ray Train (config YAML + key=value overrides)",
                       description="Train (or resume, for an existing run.name) with Ray Train; metrics, the "
                                   "config and the final model go to MLflow. 'polyglot-lion train --describe' "
                                   "lists every config key.")
    p.add_argument("--config", help="YAML config, e.g. jobs/configs/qwen3_asr/tiny_cpu.yaml")
    p.add_argument("overrides", nargs="*", help="SECTION.KEY=VALUE, e.g. data.store=store train.max_steps=100")
    p.add_argument("--describe", action="store_true", help="print every config key with its default and help")


def cmd_train(args) -> int:
    if args.describe:
        print(describe())
        return 0
    cfg = load_config(args.config, args.overrides)  # every problem reported before Ray starts
    from ..train.run import train  # heavy (torch): imported once the config is known to be good, not for --help

    out = train(cfg)
    print(json.dumps(out, indent=2, default=str))
    mv = out.get("model_version")
    print(f"\nMLflow run {out['mlflow_run_id']} in {out['tracking_uri']}"
          + (f"; registered {mv['name']} version {mv['version']}" if mv else ""))
    if cfg.train.select_by != "last" and out.get("model_step") is not None:
        print(f"the run's model is the checkpoint of step {out['model_step']} (lowest {cfg.train.select_by} of "
              f"those kept): {out['checkpoint']}; a resume starts from {out['latest_checkpoint']}")
    if out.get("already_finished"):
        print(f"nothing left to train: run {cfg.run.name!r} had already finished (step "
              f"{(out.get('metrics') or {}).get('step', '?')}); its model and version are as they were")
    if out.get("stopped_early_at_step") is not None:
        print(f"stopped early at step {out['stopped_early_at_step']} of {cfg.train.max_steps}: "
              f"{cfg.train.select_by} did not improve for {cfg.train.early_stop_patience} checkpoints "
              "(train.early_stop_patience)")
    said = skipped_summary(out.get("metrics") or {})
    if said:
        print(said)
    return 0


def skipped_summary(metrics: dict) -> str | None:
    """One line on the training utterances a run dropped (from its final metrics), or None if it dropped none."""
    if not metrics.get("skipped_utterances"):
        return None
    reasons = ", ".join(f"{k[len('skipped_'):]}={v:.0f}" for k, v in sorted(metrics.items())
                        if k.startswith("skipped_") and k != "skipped_utterances")
    return (f"{metrics['skipped_utterances']:.0f} training utterance(s) skipped: they could not be featurised "
            f"({reasons}; the first are named in the job's log)")
