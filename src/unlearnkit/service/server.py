"""The uvicorn server of ``unlearnkit serve`` (the tests start it the same way), with TLS when
a certificate and its key are given."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import uvicorn

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


def server_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> uvicorn.Config:
    """The uvicorn settings; TLS (HTTPS only, uvicorn's defaults) when the two files are given."""
    check_tls(ssl_certfile, ssl_keyfile)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=str(ssl_certfile) if ssl_certfile is not None else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile is not None else None,
    )
