"""The Ray Serve application: an OpenAI-compatible transcription endpoint over the shared Transcriber.

    POST /v1/audio/transcriptions   multipart: file, model, [language], [response_format=json|text|verbose_json]
    GET  /v1/models                 what is served (registry name, version, alias, the names ``model`` may take)
    GET  /v1/stats                  requests, batches (or decode rounds), the batch sizes seen, the replica's memory
    GET  /healthz                   200 once the model is loaded (never needs the key)
    GET  /                          a small page to upload or record audio (static; it sends the key itself)
    GET  /docs, /openapi.json       the API description

Guards: uploads above ``max_upload_mb`` and audio above ``max_audio_s`` -> 413; a header asking the decoder for
more than ``max_channels`` / ``max_rate_hz`` / ``max_decoded_mb`` -> 413 before any sample is decoded; unreadable
audio -> 400 naming the problem; ``model`` that is not the served model or one of its names -> 404
``model_not_found`` (missing -> 400); more than ``max_in_flight`` requests in the replica -> 503 with Retry-After;
an optional API key (``Authorization: Bearer``, scheme in any case; from a file or an environment variable) -> 401
without it, on everything but /healthz and the static page. Every non-2xx answer has OpenAI's body
``{"error": {"message", "type", "param", "code"}}`` (FastAPI's own 404/405/422/500 included); only answers Serve's
proxy makes without reaching a replica (its queue full, no replica at all) stay Serve's plain text. Decoding runs
in worker threads (at most ``decode_threads`` at once), so the event loop keeps answering health checks.

The server never opens a path a client sends. Batching (``batching``): "continuous" (the default) runs one decode
loop per replica with ``max_batch_size`` slots (``inference/scheduler.py``, in a thread of its own, so the event
loop keeps answering): each chunk of a request is prefilled into a free slot between decode steps and the request
is answered as soon as its own sequences end; at most ``max_queue`` chunks wait for a slot, more -> 503 with
Retry-After. "request" batches whole requests with ``@serve.batch`` under a cap on clips and on total audio
seconds, each batch decoding until its longest clip ends (the baseline of benchmarks/serve_load.py; also what a
checkpoint gets whose generation_config only ``generate()`` applies). ``user_config`` (``model``, ``revision``,
batch settings) switches the model in place: the new one loads in a thread while the old one keeps answering,
then replaces it between batches (continuous: new requests go to the new model's loop, the old loop finishes
what it holds, then ends). ``X-Batch-Size`` (``batch_size`` in verbose_json) is the clips of the request's batch
(request) or the most rows decoded beside it, itself included (continuous).
"""


import asyncio
import hmac
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyglot_lion.data.audio import REJECT_REASONS, AudioRejected, DecodeLimits, decode_audio, without_object_reprs
from polyglot_lion.inference.scheduler import Busy, ContinuousBatcher
from polyglot_lion.inference.transcriber import Transcriber, language_name

RESPONSE_FORMATS = ("json", "text", "verbose_json")
BATCHING = ("continuous", "request")
PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeSettings:
    model: str = "models:/polyglot-lion-tiny@champion"  # folder, models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID
    tracking_uri: str | None = None
    max_upload_mb: float = 25.0  # OpenAI's limit
    max_audio_s: float = 600.0
    api_key_env: str = "POLYGLOT_LION_API_KEY"  # key from this environment variable, if set
    api_key_file: str | None = None  # ... or from this file (server-side path from the operator, not a client)
    batching: str = "continuous"  # "continuous": a decode loop with slots; "request": @serve.batch (the module doc)
    max_batch_size: int = 16  # clips decoded at once: the decode loop's slots, or clips per request batch
    max_queue: int = 64  # continuous: chunks waiting for a slot; more -> 503 with OpenAI's body and Retry-After
    max_batch_audio_s: float = 480.0  # request batching: audio seconds per batch
    batch_wait_timeout_s: float = 0.05  # request batching: how long a batch waits for more requests
    chunk_s: float = 30.0
    max_new_tokens: int | None = None  # a fixed generation budget per batch; None: by the longest clip's duration
    model_aliases: list[str] = field(default_factory=lambda: ["polyglot-lion"])  # more names ``model`` may take
    max_channels: int = 8  # decode limits, checked on the header before any sample is decoded (DecodeLimits)
    max_rate_hz: int = 192_000
    max_decoded_mb: float = 256.0  # frames x channels x 4 bytes at the source rate
    decode_threads: int = 2  # uploads decoded at once (each up to max_decoded_mb), off the event loop
    max_in_flight: int = 32  # requests a replica holds at once; more -> 503 with OpenAI's body and Retry-After
    # False for benchmarks only: every sequence decodes its whole budget (16 + 15 tokens per second of audio,
    # or max_new_tokens), so a random model's cost follows its clips' durations as a trained model's does
    stop_at_eos: bool = True
    stop_on_loop: bool = True

    @classmethod
    def from_args(cls, args: dict | None) -> "ServeSettings":
        args = dict(args or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown Serve app arguments {unknown}; allowed: {sorted(known)}")
        s = cls(**args)
        problems = [f"{name} must be > 0 (is {getattr(s, name)})"
                    for name in ("max_upload_mb", "max_audio_s", "max_batch_audio_s", "chunk_s", "max_decoded_mb")
                    if not getattr(s, name) > 0]
        problems += [f"{name} must be >= 1 (is {getattr(s, name)})"
                     for name in ("max_batch_size", "max_channels", "max_rate_hz", "decode_threads", "max_in_flight")
                     if getattr(s, name) < 1]
        if s.batching not in BATCHING:
            problems.append(f"batching must be one of {list(BATCHING)} (is {s.batching!r})")
        if not isinstance(s.max_queue, int) or s.max_queue < 0:
            problems.append(f"max_queue must be >= 0 (is {s.max_queue!r})")
        if s.max_new_tokens is not None and s.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1 or None (is {s.max_new_tokens})")
        if not isinstance(s.model_aliases, list) or not all(isinstance(a, str) and a for a in s.model_aliases):
            problems.append(f"model_aliases must be a list of non-empty names (is {s.model_aliases!r})")
        if problems:
            raise ValueError("Serve app arguments: " + "; ".join(problems))
        return s

    def decode_limits(self):

        return DecodeLimits(self.max_channels, self.max_rate_hz, self.max_decoded_mb)


def load_api_key(settings: ServeSettings) -> str | None:
    if settings.api_key_file:
        key = Path(settings.api_key_file).read_text().strip()
        if not key:
            raise ValueError(f"api_key_file {settings.api_key_file} is empty")
        return key
    return os.environ.get(settings.api_key_env) or None


_ERROR_TYPES = {401: "authentication_error", 404: "invalid_request_error", 500: "server_error",
                503: "server_error"}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None,
               kind: str | None = None) -> dict:
    """OpenAI's error body, so that OpenAI clients raise with the message. Pure."""
    return {"error": {"message": message, "type": kind or _ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def _error(status: int, message: str, code: str | None = None, param: str | None = None,
           headers: dict | None = None):
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


class _Reject(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def _batch_cost_of(items: list) -> int:
    """``@serve.batch`` cost function: items are (samples, language, service)."""
    return items[0][2]._batch_cost(items)


# docs and schema are routes of the service below, behind the key like everything else
api = FastAPI(title="Polyglot-Lion transcription", version="1", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    """FastAPI's own 404 (no such route) and 405 (wrong method) in OpenAI's shape."""
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs (POST /v1/audio/transcriptions)"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code),
                  headers=getattr(exc, "headers", None))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    first = (exc.errors() or [{}])[0]
    param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
    return _error(422, f"invalid request: {first.get('msg', 'validation failed')}", "invalid_request", param)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception):
    return _error(500, f"internal error ({type(exc).__name__}); the request was not processed", "internal_error")


@serve.deployment(
    name="Transcription",
    max_ongoing_requests=48,  # max_in_flight + 16: the surplus reaches the replica and gets OpenAI's 503 body
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
        self.batcher: ContinuousBatcher | None = None  # the decode loop of self.tr (continuous batching)
        self.revision = None
        self.stats = {"requests": 0, "batches": 0, "batch_sizes": {}, "errors": {}}
        self._in_flight = 0
        self._decode_slots = asyncio.Semaphore(self.settings.decode_threads)
        self._idle = asyncio.Event()  # cleared while a batch runs; see _batch
        self._idle.set()
        tr = self._load(self.settings.model)
        self._swap(tr, self._start_batcher(tr))

    # --- model lifecycle ----------------------------------------------------------------------------------
    def _load(self, uri: str) -> Transcriber:
        s = self.settings
        return Transcriber.load(uri, tracking_uri=s.tracking_uri, chunk_s=s.chunk_s, batch_size=s.max_batch_size,
                                max_batch_audio_s=s.max_batch_audio_s, max_new_tokens=s.max_new_tokens,
                                stop_at_eos=s.stop_at_eos, stop_on_loop=s.stop_on_loop)

    def _start_batcher(self, tr: Transcriber, after: ContinuousBatcher | None = None) -> ContinuousBatcher | None:
        """The running decode loop of ``tr`` with max_batch_size slots; None with request batching, or for a model
        that only ``generate()`` decodes (then its requests are batched whole, said once on stderr). ``after``: a
        closed loop of the same model, which this one waits for (``ContinuousBatcher.start``)."""
        if self.settings.batching != "continuous":
            return None
        if tr.engine is None:
            print(f"TranscriptionService: {tr.describe().get('uri')} decodes with engine={tr.engine_name!r}, which "
                  f"has no decode loop; its requests are batched whole (batching='request')", file=sys.stderr)
            return None
        batcher = ContinuousBatcher(tr, slots=self.settings.max_batch_size, max_queue=self.settings.max_queue,
                                    on_round=self._count_round)
        return batcher.start(after=after)

    def _swap(self, tr: Transcriber, batcher: ContinuousBatcher | None) -> None:
        """The new model and loop answer from now on (no await between the two: a request sees both or neither);
        the old loop answers what it holds, then ends."""
        old = self.batcher
        self.tr, self.batcher = tr, batcher
        if old is not None and old is not batcher:
            old.close()

    def _count_round(self, rows: int) -> None:
        """From the decode loop's thread: one round of steps with ``rows`` rows running."""
        self.stats["batches"] += 1
        self.stats["batch_sizes"][str(rows)] = self.stats["batch_sizes"].get(str(rows), 0) + 1

    async def reconfigure(self, user_config: dict) -> None:
        """``model`` / ``revision`` change -> load the new model beside the old one, then swap; batch knobs apply
        at once (a new max_batch_size under continuous batching: a new loop with that many slots, which starts
        when the old one has finished what it holds). In-flight requests finish on the model they started with."""
        cfg = dict(user_config or {})
        for key in ("max_batch_size", "max_batch_audio_s", "batch_wait_timeout_s", "max_upload_mb", "max_audio_s",
                    "max_channels", "max_rate_hz", "max_decoded_mb", "max_in_flight", "max_queue"):
            if key in cfg:
                setattr(self.settings, key, type(getattr(self.settings, key))(cfg[key]))
        self._batch.set_max_batch_size(self.settings.max_batch_size)
        self._batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        if self.batcher is not None:
            self.batcher.max_queue = self.settings.max_queue
        uri = cfg.get("model", self.settings.model)
        revision = cfg.get("revision")
        if self.tr is None or uri != self.settings.model or revision != self.revision:
            new = await asyncio.to_thread(self._load, uri)
            batcher = await asyncio.to_thread(self._start_batcher, new)  # allocates its cache: off the event loop
            self._swap(new, batcher)
            self.settings.model, self.revision = uri, revision
        elif self.batcher is not None and self.batcher.slots != self.settings.max_batch_size:
            self._swap(self.tr, await asyncio.to_thread(self._start_batcher, self.tr, self.batcher))

    def check_health(self) -> None:
        if self.tr is None:
            raise RuntimeError("no model loaded")
        if self.batcher is not None and not self.batcher.alive:
            raise RuntimeError("the decode loop has ended")

    def _model_info(self, tr: Transcriber | None = None) -> dict:
        info = (tr or self.tr).describe()
        return {"id": info.get("name") or info.get("uri"), "version": info.get("version"),
                "alias": info.get("alias"), "uri": info.get("uri"), "device": info.get("device")}

    def model_names(self) -> list[str]:
        """What a request's ``model`` may say: the served id, its URI, NAME@ALIAS, NAME/VERSION, model_aliases."""
        m = self._model_info()
        names = [m["id"], m["uri"], self.settings.model, *self.settings.model_aliases]
        if m["alias"]:
            names.append(f"{m['id']}@{m['alias']}")
        if m["version"]:
            names.append(f"{m['id']}/{m['version']}")
        return list(dict.fromkeys(n for n in names if n))

    # --- batching -----------------------------------------------------------------------------------------
    async def _continuous(self, samples: np.ndarray, language: str | None) -> dict:
        """One request through the decode loop: chunks queued (the processor runs in a worker thread), answered
        when its own sequences end. Busy -> 503 with Retry-After."""
        while True:
            tr, batcher = self.tr, self.batcher
            if batcher is None:  # switched to a model without a decode loop meanwhile
                return await self._whole(samples, language)
            try:
                future = await asyncio.to_thread(batcher.submit, samples, language)
                break
            except Busy as e:
                raise _Reject(503, f"overloaded: {e}; retry after 2 s", "overloaded", headers={"Retry-After": "2"})
            except RuntimeError:
                if batcher is self.batcher:
                    raise
                # a model switch closed this loop between the two lines above: the new one takes the request
        r = await asyncio.wrap_future(future)  # cancelled with the request: its slot is freed at the next check
        return {**r.to_dict(), "model": self._model_info(tr), "batch_size": r.timings["rows"]}

    async def _whole(self, samples: np.ndarray, language: str | None) -> dict:
        """One request through ``@serve.batch`` (request batching)."""
        await self._idle.wait()  # see _batch
        return await self._batch((samples, language, self))

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
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def _unauthorised(self, request: Request):
        """None when the request may go on, else the 401 answer."""
        if self._authorised(request):
            return None
        self._count_error(401)
        return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key",
                      headers={"WWW-Authenticate": "Bearer"})

    def _count_error(self, status: int) -> None:
        self.stats["errors"][str(status)] = self.stats["errors"].get(str(status), 0) + 1

    async def _read_upload(self, request: Request) -> tuple[bytes, dict]:
        limit = int(self.settings.max_upload_mb * 2**20)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise _Reject(413, f"upload of {int(declared) / 2**20:.1f} MB is above the limit of "
                               f"{self.settings.max_upload_mb:g} MB", "file_too_large", "file")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit + 64 * 1024:  # multipart framing aside
                raise _Reject(413, f"upload is above the limit of {self.settings.max_upload_mb:g} MB", "file_too_large",
                              "file")
        request._body = bytes(body)  # let Starlette parse the multipart body we already hold
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            got = ctype[:80] or "no content type"
            raise _Reject(400, f"expected multipart/form-data with a 'file' field (got {got})", "invalid_content_type")
        try:
            form = await request.form()
        except Exception as e:  # Starlette's MultiPartException, a bad boundary, a broken part header
            raise _Reject(400, f"malformed multipart body: {str(e)[:160] or type(e).__name__}", "invalid_multipart")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _Reject(400, "missing the 'file' field: send the audio as a multipart file upload "
                               "(a file path is never read by the server)", "missing_required_parameter", "file")
        data = await upload.read()
        if len(data) > limit:
            raise _Reject(413, f"file of {len(data) / 2**20:.1f} MB is above the limit of "
                               f"{self.settings.max_upload_mb:g} MB", "file_too_large", "file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return data, fields

    def _decode(self, data: bytes) -> np.ndarray:
        """Runs in a worker thread (see transcriptions): libsndfile and soxr release the GIL while they work."""

        try:
            return decode_audio(data, max_duration_s=self.settings.max_audio_s,
                                limits=self.settings.decode_limits()).samples
        except AudioRejected as e:
            if e.reason == "too_long":
                raise _Reject(413, f"audio is too long ({e.detail}); the limit is {self.settings.max_audio_s:g} s",
                              "audio_too_long", "file")
            if e.reason == "over_decode_limits":
                raise _Reject(413, f"over_decode_limits: {e.detail}; the server decodes at most "
                                   f"{self.settings.max_channels} channels, {self.settings.max_rate_hz} Hz and "
                                   f"{self.settings.max_decoded_mb:g} MiB of samples", e.reason, "file")
            raise _Reject(400, f"{e.reason}: {REJECT_REASONS[e.reason]}" + (f" ({e.detail})" if e.detail else "")
                          + "; send WAV, FLAC, OGG/Opus, MP3 or another format libsndfile reads", e.reason, "file")
        except Exception as e:
            detail = without_object_reprs(str(e))[:160]
            raise _Reject(400, f"unreadable_audio: {type(e).__name__}: {detail}", "unreadable_audio", "file")

    def _check_model(self, fields: dict) -> None:
        model = fields.get("model")
        if not model:
            raise _Reject(400, "missing the 'model' field; it names the served model: "
                               f"one of {self.model_names()}", "missing_required_parameter", "model")
        if model not in self.model_names():
            raise _Reject(404, f"model {model[:80]!r} is not served here; this server serves "
                               f"{self.model_names()} (GET /v1/models)", "model_not_found", "model")

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request):
        self.stats["requests"] += 1
        t0 = time.perf_counter()
        refused = self._unauthorised(request)
        if refused:
            return refused
        if self._in_flight >= self.settings.max_in_flight:  # answered before the body is read
            self._count_error(503)
            return _error(503, f"overloaded: {self._in_flight} requests in progress (max_in_flight "
                               f"{self.settings.max_in_flight}); retry after 2 s", "overloaded",
                          headers={"Retry-After": "2"})
        self._in_flight += 1
        try:
            return await self._transcribe(request, t0)
        finally:
            self._in_flight -= 1

    async def _transcribe(self, request: Request, t0: float):
        try:
            data, fields = await self._read_upload(request)
            self._check_model(fields)
            fmt = fields.get("response_format", "json")
            if fmt not in RESPONSE_FORMATS:
                raise _Reject(400, f"response_format {fmt[:40]!r} is not supported; allowed: {list(RESPONSE_FORMATS)}",
                              "invalid_value", "response_format")
            language = fields.get("language") or None
            if language:

                try:
                    language_name(language)
                except ValueError as e:
                    raise _Reject(400, str(e)[:300], "invalid_value", "language")
            async with self._decode_slots:  # bounded: at most decode_threads decoded buffers at once
                samples = await asyncio.to_thread(self._decode, data)
            del data
            r = await (self._continuous if self.batcher is not None else self._whole)(samples, language)
        except _Reject as e:
            self._count_error(e.status)
            return _error(e.status, e.message, e.code, e.param, e.headers)
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
        refused = self._unauthorised(request)
        if refused:
            return refused
        m = self._model_info()
        return {"object": "list", "data": [{"object": "model", "owned_by": "polyglot-lion", **m,
                                            "names": self.model_names()}]}

    @api.get("/v1/stats")
    async def get_stats(self, request: Request):
        refused = self._unauthorised(request)
        if refused:
            return refused
        rss_kb = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        loop = self.batcher.stats() if self.batcher is not None else None
        return {**self.stats, "batch_sizes": dict(self.stats["batch_sizes"]),  # a copy: the loop thread adds keys
                "in_flight": self._in_flight, "decode_loop": loop,
                "process": {"pid": os.getpid(), "rss_mb": rss_kb / 1024,
                            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
                "settings": {k: v for k, v in asdict(self.settings).items() if "key" not in k}}

    @api.get("/openapi.json")
    async def openapi(self, request: Request):
        return self._unauthorised(request) or JSONResponse(api.openapi())

    @api.get("/docs")
    async def docs(self, request: Request):
        from fastapi.openapi.docs import get_swagger_ui_html

        return self._unauthorised(request) or get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "") + "/openapi.json", title=api.title)

    @api.get("/healthz")
    async def healthz(self):
        if self.tr is None:
            return _error(503, "model not loaded", "model_not_loaded")
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
            "max_ongoing_requests": settings.max_in_flight + 16,
            "user_config": {"model": settings.model, "max_batch_size": settings.max_batch_size,
                            "batch_wait_timeout_s": settings.batch_wait_timeout_s,
                            "max_batch_audio_s": settings.max_batch_audio_s}}
    opts.update(deployment_options or {})
    return TranscriptionService.options(**opts).bind(args)
