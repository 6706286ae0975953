"""The uvicorn server of ``unlearnkit serve`` (the tests start it the same way), with TLS when
a certificate and its key are given, and limits on what a client can hold open: at most
``limit_concurrency`` connections (beyond: 503), a request's headers within
``header_timeout_s`` (else the connection is closed), idle keep-alive connections closed after
5 s. Request bodies have their own deadline (``app.GuardMiddleware``).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from unlearnkit.errors import UnlearnkitError


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    """Both or neither; readable files that make a TLS context (refused at start-up with one
    line rather than when the first client connects)."""
    if (certfile is None) != (keyfile is None):
        raise UnlearnkitError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if certfile is None or keyfile is None:
        return
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not Path(path).is_file():
            raise UnlearnkitError(f"{flag} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise UnlearnkitError(
            f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile}: not a usable certificate "
            f"and key ({exc})"
        ) from None


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's header block (uvicorn has
    none: a client sending its headers a byte a second held the connection for ever). The
    clock starts when the connection opens and again after each response; if by then no
    complete request head arrived (or the response is sent and the client is still sending
    an unread body), the connection is closed."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        waiting_for_head = self.conn.their_state is h11.IDLE
        leftover_body = self.conn.our_state is h11.DONE
        if (waiting_for_head or leftover_body) and not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout_s": seconds})


def server_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    limit_concurrency: int = 128,
    header_timeout_s: float = 10.0,
) -> uvicorn.Config:
    """The uvicorn settings; TLS (HTTPS only, uvicorn's defaults) when the two files are given."""
    check_tls(ssl_certfile, ssl_keyfile)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=header_deadline_protocol(header_timeout_s),
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
        timeout_graceful_shutdown=10,
        ssl_certfile=str(ssl_certfile) if ssl_certfile is not None else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile is not None else None,
    )
