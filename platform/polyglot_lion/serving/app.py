"""The Ray Serve application: an OpenAI-compatible transcription endpoint over the shared Transcriber.

    POST /v1/audio/transcriptions   multipart: file, model, [language], [response_format=json|text|verbose_json]
    GET  /v1/models                 what is served (registry name, version, alias)
    GET  /v1/stats                  requests, batches and the batch sizes seen
    GET  /healthz                   200 once the model is loaded
    GET  /                          a small page to upload or record audio

Guards: uploads above ``max_upload_mb`` and audio above ``max_audio_s`` -> 413; unreadable audio -> 400 naming
the problem; overload -> 503 with Retry-After (Serve's ``max_queued_requests`` + backpressure config); an
optional API key (``Authorization: Bearer``; from a file or an environment variable) -> 401 without it. The
server never opens a path a client sends. Requests are batched with ``@serve.batch`` under a cap on clips and
on total audio seconds. ``user_config`` (``model``, ``revision``, batch settings) switches the model in place:
the new one loads in a thread while the old one keeps answering, then replaces it between batches.
"""


import asyncio
import hmac
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from ray import serve

RESPONSE_FORMATS = ("json", "text", "verbose_json")
PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeSettings:
    model: str = "models:/polyglot-lion-tiny@champion"  # folder, models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID
    tracking_uri: str | None = None
    max_upload_mb: float = 25.0  # OpenAI's limit
    max_audio_s: float = 600.0
    api_key_env: str = "POLYGLOT_LION_API_KEY"  # key from this environment variable, if set
    api_key_file: str | None = None  # ... or from this file (server-side path from the operator, not a client)
    max_batch_size: int = 16
    max_batch_audio_s: float = 480.0
    batch_wait_timeout_s: float = 0.05
    chunk_s: float = 30.0
    max_new_tokens: int | None = None  # a fixed generation budget per batch; None: by the longest clip's duration

    @classmethod
    def from_args(cls, args: dict | None) -> "ServeSettings":
        args = dict(args or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown Serve app arguments {unknown}; allowed: {sorted(known)}")
        s = cls(**args)
        for name in ("max_upload_mb", "max_audio_s", "max_batch_audio_s", "chunk_s"):
            if not getattr(s, name) > 0:
                raise ValueError(f"{name} must be > 0 (is {getattr(s, name)})")
        if s.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (is {s.max_batch_size})")
        if s.max_new_tokens is not None and s.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 or None (is {s.max_new_tokens})")
        return s


def load_api_key(settings: ServeSettings) -> str | None:
    if settings.api_key_file:
        key = Path(settings.api_key_file).read_text().strip()
        if not key:
            raise ValueError(f"api_key_file {settings.api_key_file} is empty")
        return key
    return os.environ.get(settings.api_key_env) or None


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    # OpenAI's error shape, so clients print the message
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _batch_cost_of(items: list) -> int:
    """``@serve.batch`` cost function: items are (samples, language, service)."""
    return items[0][2]._batch_cost(items)


api = FastAPI(title="Polyglot-Lion transcription", version="1")


@serve.deployment(
    name="Transcription",
    max_ongoing_requests=32,
    max_queued_requests=64,
    health_check_period_s=5,
    health_check_timeout_s=30,
    ray_actor_options={"num_cpus": 1},
)
@serve.ingress(api)
class TranscriptionService:
    def __init__(self, settings: dict | None = None):
        self.settings = ServeSettings.from_args(settings)
        self.api_key = load_api_key(self.settings)
        self.tr = None
        self.revision = None
        self.stats = {"requests": 0, "batches": 0, "batch_sizes": {}, "errors": {}}
        self._idle = asyncio.Event()  # cleared while a batch runs; see _batch
        self._idle.set()
        self._load(self.settings.model)

    # --- model lifecycle ----------------------------------------------------------------------------------
    def _load(self, uri: str) -> None:
        from polyglot_lion.inference.transcriber import Transcriber

        self.tr = Transcriber.load(uri, tracking_uri=self.settings.tracking_uri, chunk_s=self.settings.chunk_s,
                                   batch_size=self.settings.max_batch_size,
                                   max_batch_audio_s=self.settings.max_batch_audio_s,
                                   max_new_tokens=self.settings.max_new_tokens)

    async def reconfigure(self, user_config: dict) -> None:
        """``model`` / ``revision`` change -> load the new model beside the old one, then swap; batch knobs apply
        at once. In-flight batches finish on the model they started with."""
        cfg = dict(user_config or {})
        for key in ("max_batch_size", "max_batch_audio_s", "batch_wait_timeout_s", "max_upload_mb", "max_audio_s"):
            if key in cfg:
                setattr(self.settings, key, type(getattr(self.settings, key))(cfg[key]))
        self._batch.set_max_batch_size(self.settings.max_batch_size)
        self._batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        uri = cfg.get("model", self.settings.model)
        revision = cfg.get("revision")
        if self.tr is None or uri != self.settings.model or revision != self.revision:
            from polyglot_lion.inference.transcriber import Transcriber

            new = await asyncio.to_thread(
                Transcriber.load, uri, tracking_uri=self.settings.tracking_uri, chunk_s=self.settings.chunk_s,
                batch_size=self.settings.max_batch_size, max_batch_audio_s=self.settings.max_batch_audio_s,
                max_new_tokens=self.settings.max_new_tokens)
            self.tr, self.settings.model, self.revision = new, uri, revision

    def check_health(self) -> None:
        if self.tr is None:
            raise RuntimeError("no model loaded")

    def _model_info(self) -> dict:
        info = self.tr.describe()
        return {"id": info.get("name") or info.get("uri"), "version": info.get("version"),
                "alias": info.get("alias"), "uri": info.get("uri"), "device": info.get("device")}

    # --- batching -----------------------------------------------------------------------------------------
    def _batch_cost(self, items: list) -> int:
        """The number of clips, or 'over the cap' once their audio exceeds max_batch_audio_s (a single clip
        always fits: Serve refuses an item whose own cost is above max_batch_size)."""
        if len(items) > 1 and sum(len(it[0]) for it in items) / 16000 > self.settings.max_batch_audio_s:
            return self.settings.max_batch_size + 1
        return len(items)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.05, batch_size_fn=_batch_cost_of)
    async def _batch(self, items: list[tuple[np.ndarray, str | None, "TranscriptionService"]]) -> list[dict]:
        """Serve's batcher closes the next batch batch_wait_timeout_s after its first item even while this one runs
        (max_concurrent_batches only queues closed batches), so under a backlog batches would stay as small as the
        arrivals in that window (measured: ~3 at 32 clients with max_batch_size 16). Requests therefore wait at
        ``self._idle`` while a batch runs and reach the batcher together when it ends (benchmarks/serve_load.py)."""
        tr = self.tr  # the model this whole batch runs on, even if a switch lands meanwhile
        info = self._model_info()
        n = len(items)
        self.stats["batches"] += 1
        self.stats["batch_sizes"][str(n)] = self.stats["batch_sizes"].get(str(n), 0) + 1
        out: list[dict | None] = [None] * n
        by_lang: dict[str | None, list[int]] = {}
        for i, (_, lang, _) in enumerate(items):
            by_lang.setdefault(lang, []).append(i)
        self._idle.clear()
        try:
            for lang, idx in by_lang.items():  # a forced language is part of the prompt: one generate per language
                results = await asyncio.to_thread(tr.transcribe, [items[i][0] for i in idx], lang)
                for i, r in zip(idx, results):
                    out[i] = {**r.to_dict(), "model": info, "batch_size": n}
        finally:
            self._idle.set()
        return out

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        if not self.api_key:
            return True
        got = request.headers.get("authorization", "")
        return got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip(), self.api_key)

    async def _read_upload(self, request: Request) -> tuple[bytes, dict]:
        limit = int(self.settings.max_upload_mb * 2**20)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise _Reject(413, f"upload of {int(declared) / 2**20:.1f} MB is above the limit of "
                               f"{self.settings.max_upload_mb:g} MB")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit + 64 * 1024:  # multipart framing aside
                raise _Reject(413, f"upload is above the limit of {self.settings.max_upload_mb:g} MB")
        request._body = bytes(body)  # let Starlette parse the multipart body we already hold
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise _Reject(400, f"expected multipart/form-data with a 'file' field (got {ctype or 'no content type'})")
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _Reject(400, "missing the 'file' field: send the audio as a multipart file upload "
                               "(a file path is never read by the server)")
        data = await upload.read()
        if len(data) > limit:
            raise _Reject(413, f"file of {len(data) / 2**20:.1f} MB is above the limit of "
                               f"{self.settings.max_upload_mb:g} MB")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return data, fields

    def _decode(self, data: bytes) -> np.ndarray:
        from polyglot_lion.data.audio import REJECT_REASONS, AudioRejected, decode_audio

        try:
            return decode_audio(data, max_duration_s=self.settings.max_audio_s).samples
        except AudioRejected as e:
            if e.reason == "too_long":
                raise _Reject(413, f"audio is too long ({e.detail}); the limit is {self.settings.max_audio_s:g} s")
            raise _Reject(400, f"{e.reason}: {REJECT_REASONS[e.reason]}" + (f" ({e.detail})" if e.detail else "")
                          + "; send WAV, FLAC, OGG/Opus, MP3 or another format libsndfile reads")
        except Exception as e:
            raise _Reject(400, f"unreadable_audio: {type(e).__name__}: {str(e)[:160]}")

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request):
        self.stats["requests"] += 1
        t0 = time.perf_counter()
        if not self._authorised(request):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                          "authentication_error", headers={"WWW-Authenticate": "Bearer"})
        try:
            data, fields = await self._read_upload(request)
            fmt = fields.get("response_format", "json")
            if fmt not in RESPONSE_FORMATS:
                raise _Reject(400, f"response_format {fmt!r} is not supported; allowed: {list(RESPONSE_FORMATS)}")
            language = fields.get("language") or None
            if language:
                from polyglot_lion.inference.transcriber import language_name

                try:
                    language_name(language)
                except ValueError as e:
                    raise _Reject(400, str(e))
            samples = self._decode(data)
        except _Reject as e:
            self.stats["errors"][str(e.status)] = self.stats["errors"].get(str(e.status), 0) + 1
            return _error(e.status, e.message)
        await self._idle.wait()  # see _batch
        r = await self._batch((samples, language, self))
        model = r["model"]
        headers = {"X-Model": str(model["id"]), "X-Model-Version": str(model["version"] or ""),
                   "X-Batch-Size": str(r["batch_size"])}
        if fmt == "text":
            return PlainTextResponse(r["text"], headers=headers)
        if fmt == "json":
            return JSONResponse({"text": r["text"]}, headers=headers)
        return JSONResponse({
            "task": "transcribe", "language": r["language"], "duration": r["duration_s"], "text": r["text"],
            "segments": [], "model": model, "batch_size": r["batch_size"],
            "processing_s": time.perf_counter() - t0, "rtf": r["rtf"],
        }, headers=headers)

    @api.get("/v1/models")
    async def models(self, request: Request):
        if not self._authorised(request):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "authentication_error")
        m = self._model_info()
        return {"object": "list", "data": [{"object": "model", "owned_by": "polyglot-lion", **m}]}

    @api.get("/v1/stats")
    async def get_stats(self):
        return {**self.stats, "settings": {k: v for k, v in asdict(self.settings).items() if "key" not in k}}

    @api.get("/healthz")
    async def healthz(self):
        if self.tr is None:
            return _error(503, "model not loaded", "server_error")
        return {"status": "ok", "model": self._model_info()}

    @api.get("/", response_class=HTMLResponse)
    async def page(self):
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def build_app(args: dict | None = None, deployment_options: dict | None = None):
    """Serve application builder (``import_path: serve_apps.transcription:build_app`` with ``args``).

    ``args`` are ServeSettings fields; ``deployment_options`` (``num_replicas``, ``max_queued_requests``,
    ``ray_actor_options``, ...) override the decorator's for programmatic use (the CLI, tests); in YAML use the
    ``deployments:`` section instead.
    """
    from ray.serve.config import BackpressureConfig

    args = dict(args or {})
    settings = ServeSettings.from_args(args)  # a bad argument fails at build time, naming it
    opts = {"backpressure_config": BackpressureConfig(status_code=503, retry_after_s=2),
            "user_config": {"model": settings.model, "max_batch_size": settings.max_batch_size,
                            "batch_wait_timeout_s": settings.batch_wait_timeout_s,
                            "max_batch_audio_s": settings.max_batch_audio_s}}
    opts.update(deployment_options or {})
    return TranscriptionService.options(**opts).bind(args)
