"""The transcription commands: ``transcribe`` (bulk, Ray Data) and ``serve`` (the HTTP service, Ray Serve), each
parser beside its handler."""

from __future__ import annotations

import json
import os
import signal
import threading

from ..inference.bulk import BulkOptions, transcribe_bulk
from ..inference.source import resolve_model
from ..runtime import init_ray
from .errors import UsageError


def add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="bulk-transcribe folders, archives, manifests or a store split (Ray Data)",
                       description="Every input gets exactly one output row (id, source, text, language, duration_s, "
                                   "error) in OUT/transcripts.parquet and OUT/transcripts.jsonl. Re-running on the "
                                   "same OUT skips what is done and finishes the rest.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION, "
                                                  "runs:/RUN_ID or a hub id")
    p.add_argument("--input", required=True, nargs="+", help="folder tree, .tar/.tar.gz/.zip, .jsonl manifest "
                                                             "({id, audio}) or a store folder (with --split); "
                                                             "local or in a bucket (s3://bucket/prefix)")
    p.add_argument("--out", required=True, help="output folder or bucket location")
    p.add_argument("--limit", type=int, help="transcribe at most N inputs (in id order)")
    p.add_argument("--language", help="force a language (en, zh, ta, ms); default: language-agnostic")
    p.add_argument("--max-duration", type=float, help="inputs longer than this many seconds get error too_long "
                                                      "(default: any length, cut into chunks)")
    p.add_argument("--split", default="test", help="split of a store input (default test)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per generate() call (default 16)")
    p.add_argument("--max-new-tokens", type=int, help="fixed token budget per clip (default: 16 + 15 per second "
                                                      "of the longest clip in the batch)")
    p.add_argument("--actors", type=int, help="transcriber actors (default: one per GPU, else 1)")
    p.add_argument("--retry-errors", action="store_true", help="run again the inputs whose last row is an error "
                                                              "(a file not yet copied); the new row replaces it")
    p.add_argument("--max-input-mb", type=float, default=512.0, help="largest file or archive member read, in MB "
                                                                     "(default 512; larger: error file_too_large)")
    p.add_argument("--max-decoded-mb", type=float, default=512.0,
                   help="most MiB one input may decode to at its own rate and channels (default 512: 23 min of "
                        "48 kHz stereo, 2.3 h of 16 kHz mono; more: "
                        "error over_decode_limits, refused from the header)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ (default "
                                          "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def cmd_transcribe(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1 (is {args.limit})")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1 (is {args.batch_size})")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1 (is {args.max_new_tokens})")
    opts = BulkOptions(limit=args.limit, language=args.language, max_duration_s=args.max_duration,
                       batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, actors=args.actors,
                       split=args.split, tracking_uri=args.tracking_uri, retry_errors=args.retry_errors,
                       max_input_mb=args.max_input_mb, max_decoded_mb=args.max_decoded_mb)
    summary = transcribe_bulk(args.model, args.input, args.out, opts)
    print(json.dumps(summary, indent=2))
    print(f"\n{summary['outputs']} rows ({summary['transcribed']} transcribed, "
          f"{sum(summary['errors'].values())} with an error) in {args.out}/transcripts.parquet and .jsonl")
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP transcription service (Ray Serve) in the foreground",
                       description="Start a local Ray instance and the Serve app (OpenAI-compatible "
                                   "POST /v1/audio/transcriptions, GET /v1/models, /healthz, an upload page at /). "
                                   "Ctrl-C or SIGTERM stops it cleanly.")
    p.add_argument("--model", required=True, help="checkpoint folder, models:/NAME@ALIAS, models:/NAME/VERSION or "
                                                  "runs:/RUN_ID")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 to expose)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-file", help="require 'Authorization: Bearer <key>' with the key in this file "
                                          "(or set POLYGLOT_LION_API_KEY)")
    p.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    p.add_argument("--max-batch-size", type=int, default=16,
                   help="clips decoded at once: the decode loop's slots (default 16)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="upload limit, 413 above (default 25)")
    p.add_argument("--max-audio-s", type=float, default=600.0, help="audio length limit, 413 above (default 600)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ (default $MLFLOW_TRACKING_URI or "
                                          "sqlite:///mlflow.db)")


def cmd_serve(args) -> int:
    import ray  # heavy (Ray, Ray Serve; the app module imports both): only this command loads them
    from ray import serve  # heavy (Ray Serve), as above

    from ..serving.app import build_app  # heavy (Ray Serve), as above

    if args.api_key_file and not os.path.isfile(args.api_key_file):
        raise UsageError(f"--api-key-file {args.api_key_file}: no such file")
    settings = {"model": args.model, "tracking_uri": args.tracking_uri, "api_key_file": args.api_key_file,
                "max_batch_size": args.max_batch_size, "max_upload_mb": args.max_upload_mb,
                "max_audio_s": args.max_audio_s}
    resolve_model(args.model, args.tracking_uri)  # a bad model fails here, before Ray starts
    app = build_app(settings, {"num_replicas": args.replicas})
    stop = threading.Event()
    started = init_ray()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="polyglot-lion", route_prefix="/", blocking=False)
        print(f"serving {args.model} at http://{args.host}:{args.port}/ (OpenAI-compatible "
              f"/v1/audio/transcriptions); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping...", flush=True)
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
    return 0
