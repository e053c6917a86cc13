"""Typed training configuration: YAML plus ``key=value`` overrides, validated once, every problem in one error.

    cfg = load_config("jobs/configs/qwen3_asr/tiny_cpu.yaml", ["train.max_steps=50", "run.name=try1"])

Each field says what it is in its ``help``; ``describe()`` prints them all. Paths are checked here, at the
edge, so a bad config fails before Ray starts.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field

import yaml

from .data.store import list_partitions
from .storage import LocationError, resolve


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunSection:
    name: str = _f("tiny-cpu", "run name: checkpoints go to OUTPUT_DIR/NAME; re-running a name resumes it")
    output_dir: str = _f("runs", "where runs keep their files (checkpoints, a copy of the config): a folder or a "
                                 "bucket, s3://bucket/prefix or gs://bucket/prefix (S3-compatible stores: "
                                 "AWS_ENDPOINT_URL)")
    seed: int = _f(0, "seed for model init, data order and dropout")


@dataclass
class DataSection:
    store: str = _f("", "store folder written by 'polyglot-lion prepare' (required)")
    plan: str = _f("", "balance plan folder written by 'polyglot-lion balance' (required)")
    dev_split: str = _f("dev", "split used for the periodic dev loss and dev evaluation ('' for none)")
    dev_max_utterances: int = _f(64, "at most this many dev utterances per evaluation, as many from each dataset")
    target_mode: str = _f("agnostic", "agnostic: 'language None<asr_text>text' (paper); tagged: the language name",
                          choices=("agnostic", "tagged"))
    max_frames_per_batch: int = _f(24000, "duration bucketing budget: batch size x longest clip in mel frames "
                                          "(100 frames = 1 s)")
    max_batch_size: int = _f(32, "at most this many clips per batch")
    fixed_batch_size: int = _f(0, "if > 0, fixed-size batches instead of duration buckets")
    bucket_window: int = _f(512, "clips sorted by length together when bucketing (bigger: less padding, less random)")
    featurize_actors: int = _f(4, "at most this many Ray Data actors decode and featurise (0.5 CPU each); on a "
                                  "small node keep their CPUs + the workers' within the node's; 0: Ray Data tasks "
                                  "instead (processes reused across jobs, the processor cached in each)")
    shuffle_buffer: int = _f(2048, "rows mixed in the worker's seeded shuffle buffer before bucketing (the store "
                                   "streams dataset by dataset; 0: stream order)")
    plan_passes: int = _f(1, "epochs of the plan per read of the dataset, each in its own seeded shard order; > 1 "
                             "spares the input pipeline's restart at every epoch where the object store holds "
                             "that many epochs of audio (Ray Data reads ahead), and lengthens a resume's replay")
    read_ahead_rows: int = _f(64, "the worker starts the next read of the dataset in a background thread as soon "
                                  "as the current one is drained into its buffers, and holds at most this many "
                                  "rows ahead: the pipeline's restart (new processes importing the processor, "
                                  "~10 s on 2 CPUs) overlaps training instead of stalling it; 0: off")
    token_multiple: int = _f(1, "pad each micro-batch's token length to a multiple of this (masked positions, no "
                                "effect on the loss): a small set of shapes, for model.compile_mode "
                                "reduce-overhead (one CUDA graph recording per shape); 1: no padding; needs "
                                "model.host_layout")
    frame_multiple: int = _f(1, "pad each micro-batch's packed audio-encoder frames (13 per second of audio) to a "
                                "multiple of this with zero frames in windows of their own (no effect on the loss); "
                                "as token_multiple; 1: no padding")


@dataclass
class ModelSection:
    source: str = _f("tiny", "'tiny' (built in-process, random), a transformers-format folder, or a hub id")
    tiny_vocab_size: int = _f(1000, "vocabulary of the tiny model's tokenizer (trained on the store's transcripts)")
    tiny_preset: str = _f("tiny", "size of a from-scratch model: tiny (CPU minutes), demo (the shipped "
                                  "demo base's size, smaller still) or small (GPU)", choices=("tiny", "demo", "small"))
    freeze_audio_encoder: bool = _f(False, "train the decoder and projector only")
    activation_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    encoder_attention: str = _f("batched", "audio encoder attention without flash attention: batched (all windows "
                                           "in one call) or loop (transformers' call per window; same result)",
                                choices=("batched", "loop"))
    channels_last_conv: bool = _f(True, "the audio front-end's convolutions in channels-last memory layout (same "
                                        "result, faster steps: BENCHMARKS.md; not used under DeepSpeed)")
    host_layout: bool = _f(True, "compute the forward's data-dependent sizes (encoder windows, audio and answer "
                                 "positions, masks) from the CPU batch, so a GPU step never waits for a read-back "
                                 "(same result; model/host_layout.py)")
    compile: bool = _f(False, "torch.compile each decoder and encoder layer (regional: one compile serves every "
                              "layer of a kind): fused kernels and fewer launches on a GPU (BENCHMARKS.md); the first "
                              "steps compile; not with DeepSpeed")
    compile_mode: str = _f("default", "torch.compile mode of model.compile: default, reduce-overhead (each layer "
                                      "replayed as a CUDA graph, recorded once per shape: pair it with "
                                      "data.token_multiple / data.frame_multiple; gradients then accumulate into "
                                      "kept buffers) or max-autotune-no-cudagraphs",
                           choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"))


@dataclass
class TrainSection:
    max_steps: int = _f(200, "optimizer steps in total (resume continues to this count)")
    max_minutes: float = _f(0.0, "if > 0: a wall-time budget for the training steps, in minutes (start-up not "
                                 "counted; dev evaluations and checkpoints during training are): the schedule runs "
                                 "on whichever is further along, steps of max_steps or time of max_minutes, and the "
                                 "step at which the time is spent is the last (checkpointed, evaluated), so a "
                                 "slower machine trains fewer steps, not longer; read at log steps")
    epochs: float = _f(0.0, "if > 0: train about this many epochs of the balance plan instead; max_steps is then "
                            "set from the plan before training starts (its clips bucketed as the worker buckets "
                            "them, per grad_accum and worker; printed, and logged as train.max_steps)")
    lr: float = _f(2e-5, "peak learning rate (AdamW)")
    warmup_ratio: float = _f(0.02, "fraction of max_steps of linear warm-up, then cosine decay to 0")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    betas: list = _f([0.9, 0.999], "AdamW betas")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    clip_norm: float = _f(1.0, "gradient clipping max norm (0 = off)")
    bf16: bool = _f(True, "bf16 autocast on GPU (CPU always trains in fp32)")
    bf16_weights: bool = _f(False, "keep the weights in bf16 and fp32 master copies in the optimizer, no autocast "
                                   "(no cast of every weight in every micro-batch; BENCHMARKS.md); on any device, "
                                   "CPU included; checkpoints hold bf16 weights; not with DeepSpeed "
                                   "(its bf16 mode does this)")
    log_every: int = _f(10, "log metrics every N steps: to MLflow (rank 0) and one progress line in the job's log; "
                            "Ray Train gets them with each checkpoint")
    dev_every: int = _f(100, "dev loss every N steps (0 = off)")
    dev_eval_every: int = _f(0, "every N steps (and at the last) transcribe the dev split with the model being "
                                "trained and score it as 'polyglot-lion evaluate' does (greedy; WER, CER for "
                                "Mandarin; data.dev_max_utterances in all, as many from each dev set), on rank 0: "
                                "logs dev_capped_error_rate (mean over the dev sets, each capped at 100%) and per "
                                "language, dev_exact_match, dev_eval_s; 0 = off; not with DeepSpeed ZeRO-3")
    checkpoint_every: int = _f(100, "checkpoint every N steps (and at the end)")
    keep_checkpoints: int = _f(2, "keep the last K checkpoints (with train.select_by: the best K, and the latest)")
    select_by: str = _f("last", "which checkpoint is the run's model (logged to MLflow, registered, returned): the "
                                "last, or the one with the lowest dev_loss / dev_capped_error_rate (needs that "
                                "metric at every checkpoint: train.dev_every / train.dev_eval_every dividing "
                                "train.checkpoint_every); a resume still starts from the latest",
                        choices=("last", "dev_loss", "dev_capped_error_rate"))
    early_stop_patience: int = _f(0, "stop training when this many checkpoints in a row have not improved "
                                     "train.select_by's metric on the best checkpoint before them (lower by more "
                                     "than train.early_stop_min_delta); the run's model is then the best checkpoint. "
                                     "0 = off; needs train.select_by other than last")
    early_stop_min_delta: float = _f(0.0, "the least decrease of train.select_by's metric that counts as an "
                                          "improvement for train.early_stop_patience, in the metric's units "
                                          "(percentage points for dev_capped_error_rate, nats for dev_loss)")


@dataclass
class ScalingSection:
    num_workers: int = _f(0, "Ray Train workers; 0 = local mode in the driver process")
    use_gpu: bool = _f(False, "one GPU per worker")
    cpus_per_worker: float = _f(1.0, "CPUs reserved per worker (fractions allowed, e.g. 0.5 for tests)")
    torch_threads: int = _f(0, "torch intra-op threads per worker (0 = Ray's default: the worker's CPUs); "
                               "on a small CPU node set it to the core count")
    max_failures: int = _f(0, "restart from the latest checkpoint this many times after a worker crash")
    worker_resources: dict = _f({}, "custom Ray resources each worker needs besides its CPUs/GPU, e.g. "
                                    "{node_b: 1} to place the workers on nodes started with "
                                    "--resources '{\"node_b\": 1}' (a node pool, an accelerator type)")
    deepspeed_stage: int = _f(0, "0 = DDP (or single process); 2 or 3 = DeepSpeed ZeRO stage (GPU; CPU works "
                                 "for tests)", choices=(0, 2, 3))


@dataclass
class TrackingSection:
    uri: str = _f("sqlite:///mlflow.db", "MLflow tracking URI (a SQLite file by default, or an mlflow server)")
    experiment: str = _f("polyglot-lion", "MLflow experiment")
    registered_model: str = _f("polyglot-lion-tiny", "registered model that gets a new version per run ('' = none)")
    gpu_hour_usd: float = _f(1.69, "price of one GPU-hour for the cost estimate (paper: $81 for 48 h)")


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, object]:
        return {f"{s}.{k}": v for s, sec in self.to_dict().items() for k, v in sec.items()}


class ConfigError(ValueError):
    pass


def _type_ok(value, tp) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    return isinstance(value, typing.get_origin(tp) or tp)


def _merge(cfg: dict, overrides: list[str], problems: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected KEY=VALUE, e.g. train.max_steps=100")
            continue
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            problems.append(f"override {key!r}: keys are SECTION.FIELD, e.g. data.store")
            continue
        cfg.setdefault(parts[0], {})
        if not isinstance(cfg[parts[0]], dict):
            cfg[parts[0]] = {}
        cfg[parts[0]][parts[1]] = yaml.safe_load(raw) if raw != "" else ""
    return cfg


def build_config(raw: dict, check_paths: bool = True) -> Config:
    problems: list[str] = []
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    values = {}
    for name in raw:
        if name not in sections:
            problems.append(f"unknown section {name!r}; allowed: {sorted(sections)}")
    for name in sections:
        cls = hints[name]
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            problems.append(f"{name}: must be a mapping (is {type(given).__name__})")
            given = {}
        fhints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in given.items():
            if key not in fhints:
                problems.append(f"unknown key {name}.{key}; allowed: {sorted(fhints)}")
                continue
            tp = fhints[key]
            if not _type_ok(value, tp):
                problems.append(f"{name}.{key} must be {getattr(tp, '__name__', tp)} (is {value!r})")
                continue
            choices = next(f for f in dataclasses.fields(cls) if f.name == key).metadata.get("choices")
            if choices and value not in choices:
                problems.append(f"{name}.{key} must be one of {list(choices)} (is {value!r})")
                continue
            kwargs[key] = float(value) if tp is float else value
        values[name] = cls(**kwargs)
    cfg = Config(**values)
    problems += _semantic_problems(cfg, check_paths)
    if problems:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))
    return cfg


def _semantic_problems(cfg: Config, check_paths: bool) -> list[str]:
    out = []
    t = cfg.train
    for key, v in (("train.max_steps", t.max_steps), ("train.grad_accum", t.grad_accum),
                   ("train.log_every", t.log_every), ("train.checkpoint_every", t.checkpoint_every),
                   ("train.keep_checkpoints", t.keep_checkpoints), ("data.max_batch_size", cfg.data.max_batch_size),
                   ("data.max_frames_per_batch", cfg.data.max_frames_per_batch),
                   ("data.plan_passes", cfg.data.plan_passes), ("data.token_multiple", cfg.data.token_multiple),
                   ("data.frame_multiple", cfg.data.frame_multiple)):
        if v < 1:
            out.append(f"{key} must be >= 1 (is {v})")
    if t.max_minutes < 0 or t.max_minutes != t.max_minutes:
        out.append(f"train.max_minutes must be >= 0 (is {t.max_minutes}; 0: no time budget, max_steps alone)")
    if t.dev_eval_every < 0:
        out.append(f"train.dev_eval_every must be >= 0 (is {t.dev_eval_every}; 0: off)")
    elif t.dev_eval_every and not cfg.data.dev_split:
        out.append("train.dev_eval_every needs a dev split to transcribe: data.dev_split is ''")
    elif t.dev_eval_every and cfg.scaling.deepspeed_stage == 3:
        out.append("train.dev_eval_every is not supported with scaling.deepspeed_stage=3 (ZeRO-3 shards the "
                   "weights over the ranks, and rank 0 transcribes alone); set it to 0 and evaluate the "
                   "checkpoints with 'polyglot-lion evaluate --split dev'")
    cadence = {"dev_loss": ("train.dev_every", t.dev_every),
               "dev_capped_error_rate": ("train.dev_eval_every", t.dev_eval_every)}.get(t.select_by)
    if cadence and not cfg.data.dev_split:
        out.append(f"train.select_by={t.select_by} needs a dev split: data.dev_split is ''")
    elif cadence and (cadence[1] < 1 or t.checkpoint_every % cadence[1]):
        out.append(f"train.select_by={t.select_by} needs that metric at every checkpoint: {cadence[0]} (is "
                   f"{cadence[1]}) must be >= 1 and divide train.checkpoint_every (is {t.checkpoint_every})")
    if t.early_stop_patience < 0:
        out.append(f"train.early_stop_patience must be >= 0 (is {t.early_stop_patience}; 0: off)")
    elif t.early_stop_patience and t.select_by == "last":
        out.append("train.early_stop_patience needs a metric to watch: set train.select_by to dev_loss or "
                   "dev_capped_error_rate (is last)")
    if not t.early_stop_min_delta >= 0:
        out.append(f"train.early_stop_min_delta must be >= 0 (is {t.early_stop_min_delta})")
    if t.epochs < 0:
        out.append(f"train.epochs must be >= 0 (is {t.epochs}; 0: train.max_steps decides)")
    if cfg.model.compile_mode != "default" and not cfg.model.compile:
        out.append(f"model.compile_mode={cfg.model.compile_mode} needs model.compile: true")
    if (cfg.data.token_multiple > 1 or cfg.data.frame_multiple > 1) and not cfg.model.host_layout:
        out.append("data.token_multiple / data.frame_multiple need model.host_layout: true (it pads the shapes)")
    if cfg.data.featurize_actors < 0:
        out.append(f"data.featurize_actors must be >= 0 (is {cfg.data.featurize_actors}; 0: Ray Data tasks)")
    if cfg.data.read_ahead_rows < 0:
        out.append(f"data.read_ahead_rows must be >= 0 (is {cfg.data.read_ahead_rows}; 0: no read-ahead)")
    if cfg.data.shuffle_buffer < 0:
        out.append(f"data.shuffle_buffer must be >= 0 (is {cfg.data.shuffle_buffer})")
    if cfg.scaling.deepspeed_stage:
        for key, on in (("model.compile", cfg.model.compile), ("train.bf16_weights", t.bf16_weights)):
            if on:
                out.append(f"{key} is not supported with scaling.deepspeed_stage={cfg.scaling.deepspeed_stage} "
                           "(DeepSpeed keeps bf16 weights itself and owns the module); set it to false")
    if not t.lr > 0:
        out.append(f"train.lr must be > 0 (is {t.lr})")
    if not 0 <= t.warmup_ratio < 1:
        out.append(f"train.warmup_ratio must be in [0, 1) (is {t.warmup_ratio})")
    if len(t.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in t.betas):
        out.append(f"train.betas must be two numbers in [0, 1) (is {t.betas})")
    if cfg.scaling.num_workers < 0:
        out.append(f"scaling.num_workers must be >= 0 (is {cfg.scaling.num_workers})")
    for k, v in cfg.scaling.worker_resources.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            out.append(f"scaling.worker_resources: resource {k!r} needs an amount > 0 (is {v!r})")
    if cfg.scaling.cpus_per_worker <= 0:
        out.append(f"scaling.cpus_per_worker must be > 0 (is {cfg.scaling.cpus_per_worker})")
    if check_paths:
        for key, path, marker in (("data.store", cfg.data.store, "data"), ("data.plan", cfg.data.plan, "plan.parquet")):
            if not path:
                out.append(f"{key} is required")
                continue
            try:  # a folder or a bucket location
                found = resolve(path).join(marker).exists()
            except (LocationError, OSError) as e:
                out.append(f"{key}: {path!r} cannot be read ({str(e).strip().splitlines()[0]})")
                continue
            if not found:
                out.append(f"{key}: {path!r} is not a {'store' if marker == 'data' else 'balance plan'} "
                           f"(no {marker} inside)")
        needs_dev = [k for k, on in (("train.dev_eval_every", t.dev_eval_every),
                                     (f"train.select_by={t.select_by}", t.select_by != "last")) if on]
        if needs_dev and cfg.data.dev_split and os.path.isdir(os.path.join(cfg.data.store, "data")):
            if not list_partitions(cfg.data.store, cfg.data.dev_split):
                splits = sorted({p.split for p in list_partitions(cfg.data.store)})
                out.append(f"{' and '.join(needs_dev)}: store {cfg.data.store!r} has no {cfg.data.dev_split!r} "
                           f"split (data.dev_split; the store has {splits})")
    return out


def load_config(path: str | None, overrides: list[str] = (), check_paths: bool = True) -> Config:
    problems: list[str] = []
    raw: dict = {}
    if path:
        try:
            raw = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except OSError as e:
            raise ConfigError(f"config {path}: cannot read it ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path}: must be a mapping of sections")
    raw = _merge(raw, list(overrides), problems)
    try:
        cfg = build_config(raw, check_paths)
    except ConfigError as e:
        if problems:
            raise ConfigError(str(e) + "\n  " + "\n  ".join(problems)) from None
        raise
    if problems:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))
    return cfg


def describe() -> str:
    lines = []
    for sec in dataclasses.fields(Config):
        for f in dataclasses.fields(typing.get_type_hints(Config)[sec.name]):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"{sec.name}.{f.name} = {default!r}  # {f.metadata['help']}")
    return "\n".join(lines)
