"""The HTTP API: FastAPI routes over a started DeletionService.

Every error is JSON ``{"error": {"type", "message"}}``. A user's mistake (``UnlearnkitError``) is
a 4xx code naming the problem, raised before anything is written, so bad input changes neither
the ledger nor the model. The service's own failure (``InternalError``) is a 503 with
``Retry-After`` while the service can go on (it still records changes), else a 500; anything
unexpected is a 500 too.
"""

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unlearnkit.errors import ConflictError, InternalError, NotFoundError, UnlearnkitError
from unlearnkit.service.auth import Principal, TokenStore
from unlearnkit.service.engine import DeletionService
from unlearnkit.service.inputs import array_batch, image_batch
from unlearnkit.service.ledger import Event, LedgerWriteError
from unlearnkit.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from unlearnkit.service.ratelimit import RateLimiter
from unlearnkit.service.schemas import (
    DeletionRequest,
    DeletionView,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503)
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 429, 500, 503)
}
RETRY_AFTER = {"Retry-After": "5"}
HTTP_KINDS = {404: "not_found", 405: "method_not_allowed"}


class HTTPProblem(Exception):
    def __init__(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def problem(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": kind, "message": message}}, status_code=status, headers=headers
    )


class GuardMiddleware:
    """Size limit and content type for bodies, plus request counts and latency histograms.

    The body is read here, up to the limit, so an oversized request is refused (413) before
    any route or parser sees it, whatever its Content-Length claims."""

    def __init__(self, app: ASGIApp, service: DeletionService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_seen = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen["code"] = message["status"]
            await send(message)

        try:
            response = await self._check(scope, receive)
            if isinstance(response, JSONResponse):
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, response, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics = self.service.metrics
            metrics.inc(
                "unlearnkit_http_requests_total",
                route=label,
                method=scope["method"],
                status=str(status_seen["code"]),
            )
            metrics.observe(
                "unlearnkit_http_request_seconds",
                time.perf_counter() - start,
                route=label,
                method=scope["method"],
            )

    async def _check(self, scope: Scope, receive: Receive) -> JSONResponse | Receive:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.service.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return problem(413, "too_large", f"request body is over the {limit}-byte limit")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return problem(
                415,
                "unsupported_media_type",
                f"content type must be application/json, got {ctype or 'none'!r}",
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return problem(413, "too_large", f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        ctx = err.get("ctx", {}).get("error", "")
        return "malformed_json", f"request body is not valid JSON ({ctx})".replace(" ()", "")
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    return "invalid_request", f"{loc}: {err.get('msg')}"


def view(event: Event) -> DeletionView:
    return DeletionView(
        request_id=event.request_id,
        status=event.status,  # type: ignore[arg-type]
        sample_ids=event.payload["sample_ids"],
        idempotency_key=event.idempotency_key,
        reason=event.reason,
        receipt=event.receipt,
        accepted_at=event.accepted_at,
        applied_at=event.applied_at,
    )


def server_timing(phases: dict[str, float]) -> str:
    """The W3C Server-Timing header: where the server spent a request's time (ms)."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in phases.items())


def create_app(service: DeletionService, tokens: TokenStore) -> FastAPI:
    """The app over a started service; the service is closed when the app shuts down."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="unlearnkit deletion service",
        version="1",
        lifespan=lifespan,
        description="Predictions from a model that honours deletion requests: "
        "exact (S3T) or approximate (Fast-NTK). Bearer tokens with scopes "
        "predict, delete, admin.",
    )
    app.add_middleware(GuardMiddleware, service=service)
    limiter = RateLimiter(service.config.rate_limit, service.config.rate_burst)

    @app.exception_handler(HTTPProblem)
    async def _problem(_: Request, exc: HTTPProblem) -> JSONResponse:
        return problem(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own refusals (a body that is not UTF-8 JSON, an unknown route, a
        # method a route lacks), in the same JSON shape as every other error
        kind = HTTP_KINDS.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400:
            kind, message = "malformed_json", f"request body is not valid JSON ({exc.detail})"
        return problem(exc.status_code, kind, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        kind, message = _validation_message(exc)
        return problem(400 if kind == "malformed_json" else 422, kind, message)

    @app.exception_handler(UnlearnkitError)
    async def _user_error(_: Request, exc: UnlearnkitError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return problem(404, "not_found", str(exc))
        if isinstance(exc, ConflictError):
            return problem(409, "conflict", str(exc))
        return problem(422, "invalid_request", str(exc))

    @app.exception_handler(InternalError)
    async def _internal_error(_: Request, exc: InternalError) -> JSONResponse:
        if isinstance(exc, LedgerWriteError):  # disk full / read-only: nothing was recorded
            service.metrics.inc("unlearnkit_ledger_write_errors_total")
        if service.failure is None:  # the service goes on: worth a retry
            return problem(503, "unavailable", str(exc), RETRY_AFTER)
        return problem(500, "internal_error", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return problem(500, "internal_error", f"internal error ({type(exc).__name__}); see the log")

    def require(scope: str) -> Callable[..., Awaitable[Principal]]:
        async def check(authorization: Annotated[str | None, Header()] = None) -> Principal:
            challenge = {"WWW-Authenticate": "Bearer"}
            if not authorization or not authorization.lower().startswith("bearer "):
                raise HTTPProblem(401, "unauthorized", "missing Bearer token", challenge)
            who = tokens.identify(authorization[7:].strip())
            if who is None:
                raise HTTPProblem(401, "unauthorized", "invalid token", challenge)
            wait_s = limiter.take(who.name)
            if wait_s > 0:
                service.metrics.inc("unlearnkit_rate_limited_total")
                raise HTTPProblem(
                    429,
                    "rate_limited",
                    f"token {who.name!r} is over its rate limit of {limiter.rate:g} requests/s "
                    f"(burst {limiter.burst}); retry in {wait_s:.2f} s",
                    {"Retry-After": limiter.retry_after(wait_s)},
                )
            if not who.allows(scope):
                raise HTTPProblem(403, "forbidden", f"token {who.name!r} lacks the {scope!r} scope")
            return who

        return check

    @app.get("/healthz", responses={503: {"description": "cannot record changes"}})
    def healthz() -> JSONResponse:
        body = {"mode": service.config.mode, "model_version": service.model.version}
        failure = service.failure
        if failure is not None:
            return JSONResponse({"status": "failing", "reason": failure, **body}, status_code=503)
        return JSONResponse({"status": "ok", **body})

    @app.get("/metrics", response_class=PlainTextResponse, responses=AUTH_ERRORS)
    def metrics(_: Annotated[Principal, Depends(require("admin"))]) -> PlainTextResponse:
        return PlainTextResponse(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    def predict(
        body: PredictRequest,
        _: Annotated[Principal, Depends(require("predict"))],
        response: Response,
    ) -> PredictResponse:
        prep, cfg = service.model.preprocessing, service.config  # how it was trained
        x = (
            array_batch(body.inputs, prep, cfg.max_batch)
            if body.inputs is not None
            else image_batch(body.images or [], prep, cfg.max_batch, cfg.max_image_bytes)
        )
        timings: dict[str, float] = {}
        try:
            probs, version = service.predict(x, timings)
        except ConflictError as exc:  # nothing left to serve until a retrain lands
            raise HTTPProblem(503, "unavailable", str(exc), RETRY_AFTER) from None
        response.headers["Server-Timing"] = server_timing(timings)
        return PredictResponse(
            probabilities=probs.tolist(),
            predictions=probs.argmax(dim=1).tolist(),
            model_version=version,
        )

    @app.post("/v1/deletions", status_code=202, response_model=DeletionView, responses=ERRORS)
    def delete(
        body: DeletionRequest,
        who: Annotated[Principal, Depends(require("delete"))],
        response: Response,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> DeletionView:
        if idempotency_key is None:
            raise HTTPProblem(
                400, "missing_idempotency_key", "the Idempotency-Key header is required"
            )
        if not 1 <= len(idempotency_key) <= 200 or not idempotency_key.isprintable():
            raise HTTPProblem(
                400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable characters"
            )
        timings: dict[str, float] = {}
        event, _ = service.submit_deletion(who, list(body.sample_ids), idempotency_key, timings)
        response.headers["Server-Timing"] = server_timing(timings)
        return view(event)

    @app.get("/v1/deletions/{request_id}", response_model=DeletionView, responses=ERRORS)
    def deletion(
        request_id: str, _: Annotated[Principal, Depends(require("delete"))]
    ) -> DeletionView:
        return view(service.get_deletion(request_id))

    @app.get("/v1/model", responses=AUTH_ERRORS)
    def model(_: Annotated[Principal, Depends(require("predict"))]) -> dict[str, Any]:
        return json.loads(json.dumps(service.model_status(), default=str))

    return app
