"""The HTTP API: FastAPI routes over a started DeletionService.

What an anonymous client can cost the server is bounded before any route runs
(``GuardMiddleware``): a request with a body is authenticated from its headers before a byte of
the body is read; the body is read against a deadline (``body_timeout_s`` plus the time its size
takes at ``min_body_rate`` bytes/s) and a size limit; a response to a request whose body was not
read to the end closes the connection; Content-Length with Transfer-Encoding is refused; metric
labels come from fixed sets (``other`` for an unknown method). Header deadlines and the
connection limit are the server's (``server.server_config``).

Every error is JSON ``{"error": {"type", "message"}}``. A user's mistake (``UnlearnkitError``) is
a 4xx code naming the problem, raised before anything is written, so bad input changes neither
the ledger nor the model. The service's own failure (``InternalError``) is a 503 with
``Retry-After`` while the service can go on (it still records changes), else a 500; anything
unexpected is a 500 too.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unlearnkit.errors import ConflictError, InternalError, NotFoundError, UnlearnkitError
from unlearnkit.service.api_docs import mount_api_docs
from unlearnkit.service.auth import Principal, TokenStore
from unlearnkit.service.engine import DeletionService
from unlearnkit.service.image_budget import check_images
from unlearnkit.service.inputs import array_batch, image_batch
from unlearnkit.service.ledger import Event, LedgerWriteError
from unlearnkit.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from unlearnkit.service.ratelimit import RateLimiter
from unlearnkit.service.schemas import (
    DeletionPage,
    DeletionReceipt,
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
# the same errors on a route whose own responses are not JSON (/metrics): documented as JSON
JSON_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for code in (401, 403, 429, 500, 503)
}
RETRY_AFTER = {"Retry-After": "5"}
HTTP_KINDS = {404: "not_found", 405: "method_not_allowed"}
# metric labels: a fixed set, whatever a client sends
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BODY_METHODS = ("POST", "PUT", "PATCH")
CLOSE = {"Connection": "close"}
KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))  # visible ASCII


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def bearer_token(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip()


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
    """What a request may cost before a route sees it, plus request counts and latencies.

    A body-carrying request is authenticated (401), sized (413) and typed (415) from its
    headers alone; only then is the body read, up to the size limit and against the deadline
    (408). A refusal sent before the body was read to the end closes the connection, so no
    unread body lingers on it."""

    def __init__(self, app: ASGIApp, service: DeletionService, tokens: TokenStore) -> None:
        self.app, self.service, self.tokens = app, service, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_seen = {"code": 500}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        read = {"done": not has_body}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen["code"] = message["status"]
                if not read["done"]:  # the rest of the body would linger on the connection
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"connection", b"close")],
                    }
            await send(message)

        try:
            response = await self._check(scope, receive, headers, read)
            if isinstance(response, JSONResponse):
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, response, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = method_label(scope["method"])
            metrics = self.service.metrics
            metrics.inc(
                "unlearnkit_http_requests_total",
                route=label,
                method=method,
                status=str(status_seen["code"]),
            )
            metrics.observe(
                "unlearnkit_http_request_seconds",
                time.perf_counter() - start,
                route=label,
                method=method,
            )

    async def _check(
        self, scope: Scope, receive: Receive, headers: dict[str, str], read: dict[str, bool]
    ) -> JSONResponse | Receive:
        if "transfer-encoding" in headers and "content-length" in headers:
            return problem(
                400,
                "bad_request",
                "a request may not carry both Content-Length and Transfer-Encoding",
                CLOSE,
            )
        if scope["method"] not in BODY_METHODS:
            return receive
        token = bearer_token(headers.get("authorization"))
        if token is None or self.tokens.identify(token) is None:
            message = "missing Bearer token" if token is None else "invalid token"
            return problem(401, "unauthorized", message, {"WWW-Authenticate": "Bearer", **CLOSE})
        config = self.service.config
        limit = config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return problem(413, "too_large", f"request body is over the {limit}-byte limit", CLOSE)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return problem(
                415,
                "unsupported_media_type",
                f"content type must be application/json, got {ctype or 'none'!r}",
                CLOSE,
            )
        body = await self._read_body(receive, limit, read)
        if isinstance(body, JSONResponse):
            return body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    async def _read_body(
        self, receive: Receive, limit: int, read: dict[str, bool]
    ) -> bytes | JSONResponse:
        """The body, read against a deadline that moves with what arrived: ``body_timeout_s``
        plus the time the bytes received so far take at ``min_body_rate`` bytes/s. A client
        sending slower than that rate (after the grace period) is cut off with a 408; a whole
        body of the largest size gets at most ``body_timeout_s + max_body_bytes / rate``."""
        config = self.service.config
        started = time.monotonic()
        chunks: list[bytes] = []
        size = 0
        while True:
            allowed = config.body_timeout_s + size / config.min_body_rate
            left = started + allowed - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                self.service.metrics.inc("unlearnkit_slow_requests_total")
                return problem(
                    408,
                    "request_timeout",
                    f"the request body did not arrive in time (at least "
                    f"{config.min_body_rate:g} bytes/s after {config.body_timeout_s:g} s)",
                    CLOSE,
                )
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return problem(
                    413, "too_large", f"request body is over the {limit}-byte limit", CLOSE
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                read["done"] = True
                break
        return b"".join(chunks)


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        ctx = err.get("ctx", {}).get("error", "")
        return "malformed_json", f"request body is not valid JSON ({ctx})".replace(" ()", "")
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    return "invalid_request", f"{loc}: {err.get('msg')}"


def idempotency_key_of(request: Request) -> str:
    """The one Idempotency-Key header: 1-200 visible ASCII characters (a non-ASCII key would
    be stored as the server happened to decode it, so it is refused instead)."""
    keys = request.headers.getlist("idempotency-key")
    if not keys:
        raise HTTPProblem(400, "missing_idempotency_key", "the Idempotency-Key header is required")
    if len(keys) > 1:
        raise HTTPProblem(400, "invalid_idempotency_key", "send exactly one Idempotency-Key header")
    key = keys[0]
    if not 1 <= len(key) <= 200 or not set(key) <= KEY_CHARS:
        raise HTTPProblem(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-200 visible ASCII characters (no spaces)",
        )
    return key


def iso(t: float) -> str:
    """A Unix time as ISO 8601 in UTC."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def iso_times(receipt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The receipt as stored, its ``*_at`` Unix times as ISO 8601."""
    if receipt is None:
        return None
    return {
        k: iso(v) if k.endswith("_at") and isinstance(v, int | float) else v
        for k, v in receipt.items()
    }


def view(event: Event) -> DeletionView:
    return DeletionView(
        request_id=event.request_id,
        status=event.status,  # type: ignore[arg-type]
        sample_ids=event.payload["sample_ids"],
        idempotency_key=event.idempotency_key,
        reason=event.reason,
        receipt=iso_times(event.receipt),
        accepted_at=iso(event.accepted_at),  # type: ignore[arg-type]
        applied_at=iso(event.applied_at) if event.applied_at is not None else None,  # type: ignore[arg-type]
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
        docs_url=None,  # served from local files below, not a CDN
        redoc_url=None,
        description="Predictions from a model that honours deletion requests: "
        "exact (S3T) or approximate (Fast-NTK). Bearer tokens with scopes "
        "predict, delete, admin.",
    )
    mount_api_docs(app)
    app.add_middleware(GuardMiddleware, service=service, tokens=tokens)
    bearer = HTTPBearer(
        auto_error=False,
        description="a token from the --tokens file (scopes: predict, delete, admin)",
    )
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
        async def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Principal:
            challenge = {"WWW-Authenticate": "Bearer"}
            if credentials is None:
                raise HTTPProblem(401, "unauthorized", "missing Bearer token", challenge)
            who = tokens.identify(credentials.credentials.strip())
            if who is None:
                raise HTTPProblem(401, "unauthorized", "invalid token", challenge)
            if not who.allows(scope):  # before the rate limit: a refusal spends nothing
                raise HTTPProblem(403, "forbidden", f"token {who.name!r} lacks the {scope!r} scope")
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
            return who

        return check

    @app.get("/healthz", responses={503: {"description": "cannot record changes"}})
    def healthz() -> JSONResponse:
        """Liveness only, for anyone: the reason of a failure is in ``GET /v1/model``."""
        if service.failure is not None:
            return JSONResponse({"status": "failing"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", response_class=PlainTextResponse, responses=JSON_AUTH_ERRORS)
    def metrics(_: Annotated[Principal, Depends(require("admin"))]) -> PlainTextResponse:
        return PlainTextResponse(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    def predict(
        body: PredictRequest,
        _: Annotated[Principal, Depends(require("predict"))],
        response: Response,
    ) -> PredictResponse:
        prep, cfg = service.model.preprocessing, service.config  # how it was trained
        if body.images is not None and len(body.images) <= cfg.max_batch:  # the decode
            # budget, from the images' headers, before any pixel is decoded
            check_images(body.images, cfg.max_decode_pixels, cfg.max_image_bytes)
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
        request: Request,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(description="1-200 visible ASCII characters; exactly one such header"),
        ] = None,
    ) -> DeletionView:
        idempotency_key = idempotency_key_of(request)
        timings: dict[str, float] = {}
        event, _ = service.submit_deletion(who, list(body.sample_ids), idempotency_key, timings)
        response.headers["Server-Timing"] = server_timing(timings)
        return view(event)

    @app.get("/v1/deletions/{request_id}", response_model=DeletionView, responses=ERRORS)
    def deletion(
        request_id: str, who: Annotated[Principal, Depends(require("delete"))]
    ) -> DeletionView:
        """A request, for the client that made it or an admin (anyone else: 404)."""
        return view(service.get_deletion(request_id, who))

    @app.get("/v1/deletions", response_model=DeletionPage, responses=ERRORS)
    def deletions(
        who: Annotated[Principal, Depends(require("delete"))],
        status: Annotated[
            str | None, Query(pattern="^(accepted|applied|failed)$", description="only these")
        ] = None,
        since: Annotated[
            datetime | None, Query(description="accepted at or after (ISO 8601)")
        ] = None,
        until: Annotated[datetime | None, Query(description="accepted before (ISO 8601)")] = None,
        client: Annotated[
            str | None, Query(max_length=64, description="admin only: one client's requests")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None, Query(pattern="^[0-9]{1,18}$", description="next_cursor of a page")
        ] = None,
    ) -> DeletionPage:
        """Deletion requests, oldest first, a page at a time: a client's own, or (admin)
        everyone's or ``client``'s."""
        if "admin" not in who.scopes:
            if client not in (None, who.name):
                raise HTTPProblem(403, "forbidden", "only an admin token may list other clients")
            client = who.name

        def stamp(t: datetime | None) -> float | None:
            if t is None:
                return None
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()

        events = service.ledger.page(
            client=client,
            status=status,
            since=stamp(since),
            until=stamp(until),
            after_seq=int(cursor or 0),
            limit=limit + 1,
        )
        more = len(events) > limit
        events = events[:limit]
        return DeletionPage(
            items=[view(e) for e in events],
            next_cursor=str(events[-1].seq) if more else None,
        )

    @app.get("/v1/deletions/{request_id}/receipt", response_model=DeletionReceipt, responses=ERRORS)
    def receipt(
        request_id: str, who: Annotated[Principal, Depends(require("delete"))]
    ) -> DeletionReceipt:
        """The archivable receipt of an applied deletion (409 while it is not applied yet)."""
        event = service.get_deletion(request_id, who)
        if event.status != "applied" or event.receipt is None or event.applied_at is None:
            raise ConflictError(
                f"deletion request {request_id!r} is {event.status}: no receipt "
                + ("yet; retry shortly" if event.status == "accepted" else f"({event.reason})")
            )
        return DeletionReceipt(
            request_id=event.request_id,
            client=event.client,
            idempotency_key=event.idempotency_key,
            sample_ids=event.payload["sample_ids"],
            status="applied",
            mode=service.config.mode,
            accepted_at=iso(event.accepted_at),  # type: ignore[arg-type]
            applied_at=iso(event.applied_at),  # type: ignore[arg-type]
            receipt=iso_times(event.receipt) or {},
            ledger={  # type: ignore[arg-type]
                "seq": event.seq,
                "link": event.link,
                "previous_link": service.ledger.link_at(event.seq - 1),
            },
        )

    @app.get("/v1/model", responses=AUTH_ERRORS)
    def model(_: Annotated[Principal, Depends(require("predict"))]) -> dict[str, Any]:
        return json.loads(json.dumps(service.model_status(), default=str))

    return app
