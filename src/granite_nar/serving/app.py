"""The HTTP side of ``granite-nar serve``: an OpenAI-compatible transcription API (FastAPI).

    POST /v1/audio/transcriptions   multipart upload ─► checks ─► decode in memory (thread pool)
                                        ─► BatchEngine (engine.py) ─► json | text | srt | vtt | verbose_json
    GET  /v1/models                 the served model
    GET  /health                    the process is up (no key needed)
    GET  /ready                     200 once the model is loaded, else 503 (no key needed)
    GET  /metrics                   Prometheus text format (metrics.py)

Every error has the OpenAI body ``{"error": {"message", "type", "param", "code"}}`` and a status a client
can act on: 400 bad request, 401 missing or wrong key, 404 unknown model, 413 upload or audio too large,
503 (with ``Retry-After``) queue full or model not loaded yet, 504 request timeout. Uploads are read into
memory up to the size cap and decoded there: no path from a request ever reaches the file system.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import math
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..audio.io import decode_audio
from ..audio.waveform import InvalidAudioError, validate_waveform
from ..lengths import SAMPLES_PER_ENCODER_FRAME, SAMPLING_RATE
from ..transcription.long_form import LongFormOptions
from ..transcription.transcribe import load_model
from .engine import BatchEngine, EngineStoppedError, QueueFullError
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .responses import MEDIA_TYPES, RESPONSE_FORMATS, json_body, subtitle_body, text_body, verbose_json_body
from .settings import ServerSettings

__all__ = ["ApiError", "create_app"]

logger = logging.getLogger(__name__)

# Form fields of the OpenAI request that this server reads; anything else is refused by name.
_FIELDS = {
    "file",
    "model",
    "response_format",
    "language",
    "prompt",
    "temperature",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "include[]",
    "include",
    "stream",
    "chunking_strategy",
}
TRANSCRIPTIONS = "/v1/audio/transcriptions"
_FORM_SLACK = 64 * 1024  # multipart headers and the small fields next to the file
_POLL_S = 0.2  # how often a waiting request checks that its client is still there


class ApiError(Exception):
    """An error answered with the OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        reason: str = "bad_request",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.reason, self.headers = reason, headers

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def create_app(settings: ServerSettings, engine: BatchEngine | None = None) -> FastAPI:
    """The FastAPI application. Without ``engine``, one is made that loads ``settings.model`` (on
    ``settings.device`` / ``settings.dtype``) on its worker thread when the app starts."""
    if engine is None:
        engine = BatchEngine(
            lambda: load_model(
                settings.model, device=settings.device, dtype=settings.dtype, quantize=settings.quantize
            ),
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_batch_seconds=settings.max_batch_seconds,
            max_queue=settings.max_queue,
            num_editing_steps=settings.num_editing_steps,
            long_form_options=LongFormOptions(max_segment_seconds=settings.max_segment_seconds),
        )
    metrics = ServerMetrics(
        queue_depth=lambda: engine.queue_depth,
        in_flight=lambda: engine.in_flight,
        ready=lambda: float(engine.ready),
    )
    engine.add_observer(metrics.observe_batch)
    latencies: deque[float] = deque(maxlen=50)  # the last answered requests' latencies, for Retry-After

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        await run_in_threadpool(engine.stop)

    app = FastAPI(
        title="granite_nar",
        summary="Granite Speech NAR speech recognition behind the OpenAI audio transcription API",
        lifespan=lifespan,
    )
    app.state.settings, app.state.engine, app.state.metrics = settings, engine, metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        if request.url.path == TRANSCRIPTIONS:
            metrics.requests.labels(status=str(err.status)).inc()
            metrics.errors.labels(reason=err.reason).inc()
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else str(err.detail)
        if err.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        return ApiError(err.status_code, detail, headers=getattr(err, "headers", None)).response()

    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(
                401,
                "missing API key: send the header 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                reason="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise ApiError(
                401,
                "invalid API key",
                code="invalid_api_key",
                reason="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded, 503 before (and when loading failed, with why)."""
        if engine.ready:
            return JSONResponse({"status": "ready", "model": settings.served_model_names[0]})
        status = "failed" if engine.load_error else "loading"
        body = {"status": status, "error": engine.load_error}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        entries = [
            {"id": name, "object": "model", "created": 0, "owned_by": "granite_nar"}
            for name in settings.served_model_names
        ]
        return {"object": "list", "data": entries}

    @app.post(
        TRANSCRIPTIONS,
        dependencies=[Depends(require_key)],
        openapi_extra=_OPENAPI_REQUEST,
        responses={200: {"description": "the transcript in the requested response_format"}},
    )
    async def transcriptions(request: Request) -> Response:
        """Transcribe one uploaded audio file (OpenAI ``audio.transcriptions.create``)."""
        response = await _transcribe(request)  # errors are counted by _api_error
        metrics.requests.labels(status=str(response.status_code)).inc()
        return response

    async def _transcribe(request: Request) -> Response:
        if not engine.ready:
            raise ApiError(
                503,
                engine.load_error or "the model is still loading; retry shortly",
                reason="not_ready",
                headers={"Retry-After": "5"},
            )
        form = await _read_form(request, settings.max_upload_bytes, settings.max_upload_mb)
        options = _check_fields(form, settings)
        upload: UploadFile = form["file"]
        name = _display_name(upload.filename)
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413,
                f"file {name} is {len(data) / 2**20:.1f} MB; this server takes at most "
                f"{settings.max_upload_mb:g} MB per upload",
                param="file",
                reason="too_large",
            )
        if not data:
            raise ApiError(400, f"file {name} is empty: it holds no bytes", param="file", reason="bad_audio")
        wave = await run_in_threadpool(_decode, data, name)
        seconds = wave.shape[0] / SAMPLING_RATE
        if seconds > settings.max_audio_seconds:
            raise ApiError(
                413,
                f"file {name} holds {seconds:.1f} s of audio; this server takes at most "
                f"{settings.max_audio_seconds:g} s per request",
                param="file",
                reason="too_long",
            )
        started = time.monotonic()
        fmt = options["response_format"]
        try:
            future = engine.submit(
                wave,
                source=name,
                word_timestamps=options["words"] or fmt in ("srt", "vtt"),
                token_scores=fmt == "verbose_json" or options["logprobs"],
            )
        except QueueFullError:
            raise ApiError(
                503,
                f"the server is busy: {engine.in_flight} requests are in progress (--max-queue "
                f"{settings.max_queue}); retry after the time in the Retry-After header",
                reason="queue_full",
                headers={"Retry-After": str(_retry_after(latencies))},
            ) from None
        except EngineStoppedError as err:
            raise ApiError(503, str(err), reason="not_ready", headers={"Retry-After": "5"}) from None
        result = await _wait(request, future)
        if result is None:  # the client went away; its work was dropped
            metrics.errors.labels(reason="client_disconnected").inc()
            return Response(status_code=499)
        latency = time.monotonic() - started
        metrics.latency.observe(latency)
        metrics.audio_seconds.inc(seconds)
        latencies.append(latency)
        return await run_in_threadpool(_render, result, fmt, options, settings, engine)  # long subtitles

    async def _wait(request: Request, future) -> Any:
        waiting = asyncio.wrap_future(future)
        deadline = time.monotonic() + settings.request_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                engine.cancel(future)
                raise ApiError(
                    504,
                    f"the transcription did not finish within {settings.request_timeout_s:g} s "
                    "(--request-timeout); its work was dropped",
                    reason="timeout",
                )
            done, _ = await asyncio.wait({waiting}, timeout=min(_POLL_S, left))
            if done:
                break
            if await request.is_disconnected():
                engine.cancel(future)
                return None
        try:
            return waiting.result()
        except EngineStoppedError as err:
            raise ApiError(503, str(err), reason="not_ready", headers={"Retry-After": "5"}) from None
        except Exception as err:  # noqa: BLE001 - the engine isolated the failure to this request
            raise ApiError(500, str(err), reason="internal") from None

    return app


async def _read_form(request: Request, cap: int, cap_mb: float):
    """The multipart form, read into memory with the upload cap enforced while it streams in."""
    limit = cap + _FORM_SLACK
    too_large = ApiError(
        413,
        f"the upload is larger than this server takes ({cap_mb:g} MB per file, --max-upload-mb)",
        param="file",
        reason="too_large",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    body, sent = b"".join(chunks), False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            400,
            f"send the audio as multipart/form-data with the file in the field 'file' (got Content-Type "
            f"{content_type or 'none'!r})",
            param="file",
        )
    return await Request(request.scope, replay).form(max_files=1, max_fields=len(_FIELDS) + 8)


def _check_fields(form, settings: ServerSettings) -> dict[str, Any]:
    """The request's options, or a 400/404 that names the field."""
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; this server "
            f"reads {', '.join(sorted(f for f in _FIELDS if not f.endswith('[]')))}",
            param=unknown[0],
        )
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(
            400,
            "no file: send the audio as the multipart field 'file' (a file part, not a text field)",
            param="file",
        )
    model = form.get("model")
    if model and model not in settings.served_model_names:
        raise ApiError(
            404,
            f"model {model!r} is not served here; this server serves "
            f"{', '.join(map(repr, settings.served_model_names))} (see GET /v1/models)",
            param="model",
            code="model_not_found",
        )
    fmt = form.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format {fmt!r} is not supported; choose one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    bad = sorted(set(granularities) - {"segment", "word"})
    if bad:
        raise ApiError(
            400,
            f"timestamp_granularities {', '.join(map(repr, bad))} not supported; choose 'segment' and/or 'word'",
            param="timestamp_granularities",
        )
    if granularities and fmt != "verbose_json":
        raise ApiError(
            400,
            "timestamp_granularities needs response_format 'verbose_json'",
            param="timestamp_granularities",
        )
    include = form.getlist("include[]") + form.getlist("include")
    if sorted(set(include) - {"logprobs"}):
        raise ApiError(400, "include supports only 'logprobs'", param="include")
    if include and fmt != "json":
        raise ApiError(400, "include[]=logprobs needs response_format 'json'", param="include")
    temperature = form.get("temperature")
    if temperature not in (None, ""):
        try:
            value = float(temperature)
        except ValueError:
            raise ApiError(400, f"temperature {temperature!r} is not a number", param="temperature") from None
        if value != 0:
            raise ApiError(
                400,
                f"temperature {value:g} is not supported: decoding is deterministic (argmax over the "
                "editor's slots); send 0 or leave it out",
                param="temperature",
            )
    if form.get("prompt"):
        raise ApiError(
            400,
            "prompt is not supported: the model edits its own CTC draft and takes no text prompt; leave it out",
            param="prompt",
        )
    language = (form.get("language") or "").strip().lower()
    if language and language not in settings.languages:
        raise ApiError(
            400,
            f"language {language!r} is not one this server transcribes ({', '.join(settings.languages) or 'none declared'}); "
            "the model is not told the language, so leave it out or start the server with --languages",
            param="language",
        )
    if str(form.get("stream") or "false").lower() not in ("false", "0"):
        raise ApiError(
            400, "stream is not supported: the transcript is returned whole; leave it out", param="stream"
        )
    if form.get("chunking_strategy") not in (None, "", "auto"):
        raise ApiError(
            400,
            "chunking_strategy: only 'auto' (the server cuts long audio at pauses, see docs/long_form.md)",
            param="chunking_strategy",
        )
    return {
        "response_format": fmt,
        "words": "word" in granularities,
        "logprobs": bool(include),
        "language": language or (settings.languages[0] if settings.languages else "unknown"),
    }


def _display_name(filename: str | None) -> str:
    """The upload's name for messages: quoted, printable, at most 80 characters."""
    name = "".join(ch for ch in (filename or "upload") if ch.isprintable())[:80]
    return repr(name or "upload")


def _decode(data: bytes, name: str) -> torch.Tensor:
    """File bytes → a validated mono 16 kHz waveform, or a 400 that says what is wrong with the file."""
    try:
        wave = decode_audio(io.BytesIO(data), SAMPLING_RATE, name=f"file {name}")
        checked = validate_waveform(torch.from_numpy(wave))
    except InvalidAudioError as err:
        message = str(err)
        if not message.startswith("file "):
            message = f"file {name}: {message.removeprefix('audio: ')}"
        raise ApiError(400, message, param="file", reason="bad_audio") from None
    if checked.shape[0] < SAMPLES_PER_ENCODER_FRAME:
        raise ApiError(
            400,
            f"file {name} holds {1000 * checked.shape[0] / SAMPLING_RATE:.0f} ms of audio; at least "
            f"{1000 * SAMPLES_PER_ENCODER_FRAME / SAMPLING_RATE:.0f} ms is needed",
            param="file",
            reason="bad_audio",
        )
    return checked


def _retry_after(latencies: deque[float]) -> int:
    """Seconds a refused client should wait: the mean latency of the last answered requests (at least 1)."""
    return max(1, math.ceil(sum(latencies) / len(latencies))) if latencies else 1


def _render(
    result, fmt: str, options: dict[str, Any], settings: ServerSettings, engine: BatchEngine
) -> Response:
    media_type = MEDIA_TYPES[fmt]
    if fmt == "json":
        decode = engine.decode if options["logprobs"] else None
        return JSONResponse(json_body(result, decode), media_type=media_type)
    if fmt == "verbose_json":
        return JSONResponse(verbose_json_body(result, options["language"], options["words"]))
    if fmt == "text":
        return PlainTextResponse(text_body(result), media_type=media_type)
    return PlainTextResponse(subtitle_body(result, fmt), media_type=media_type)


_OPENAPI_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["segment", "word"]},
                        },
                        "include[]": {"type": "array", "items": {"type": "string", "enum": ["logprobs"]}},
                        "language": {"type": "string"},
                        "temperature": {"type": "number", "enum": [0]},
                    },
                }
            }
        },
    }
}
