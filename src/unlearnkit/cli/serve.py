"""``unlearnkit serve --from DIR``: start the deletion service over a model directory.

The model is loaded, the ledger checked and replayed before the port opens, so a corrupt ledger
or model file ends the command with one clear line (exit code 2) instead of serving a wrong
model. ``--threads`` sets the CPU threads of the serving process; the background retrain child
uses one (``ServiceConfig.retrain_threads``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli.common import (
    DeviceOpt,
    ModelDirOpt,
    PrecisionOpt,
    ThreadsOpt,
    console,
    user_errors,
)
from unlearnkit.errors import UnlearnkitError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model_dir: ModelDirOpt,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8000,
    tokens: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON token file; default: the UNLEARNKIT_TOKENS variable"),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="auto (from the directory's files) | exact (S3T/SISA ensemble) | approximate "
            "(Fast-NTK state) | static (any saved model; deletions refused with a 409)"
        ),
    ] = "auto",
    ntk_update: Annotated[
        str,
        typer.Option(help="approximate mode: linearized (exact for the linearized model) | paper"),
    ] = "linearized",
    background_retrain: Annotated[
        bool,
        typer.Option(
            "--background-retrain/--no-background-retrain",
            help="retrain dead shards in the background",
        ),
    ] = True,
    snapshot_every: Annotated[
        int, typer.Option(help="applied deletions between model snapshots", min=1)
    ] = 200,
    max_body_bytes: Annotated[
        int, typer.Option(help="largest request body in bytes (larger: 413)", min=1024)
    ] = 4 * 2**20,
    max_delete_ids: Annotated[
        int, typer.Option(help="most sample ids per deletion request (more: 422)", min=1)
    ] = 1000,
    max_predict_samples: Annotated[
        int, typer.Option(help="most inputs/images per prediction request (more: 422)", min=1)
    ] = 256,
    rate_limit: Annotated[
        float,
        typer.Option(help="requests per second per token (token bucket; over it: 429); 0: off"),
    ] = 0.0,
    rate_burst: Annotated[
        int, typer.Option(help="requests a token may send at once before --rate-limit", min=1)
    ] = 20,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="also serve /metrics without a token on this port (for a scraper); default: off",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="address of the --metrics-port listener")
    ] = "127.0.0.1",
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM, chain first); serves HTTPS")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="private key of --ssl-certfile (PEM)")
    ] = None,
    max_connections: Annotated[
        int, typer.Option(help="open connections before new requests get a 503", min=1)
    ] = 128,
    header_timeout: Annotated[
        float, typer.Option(help="seconds a client may take to send its request headers")
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(help="grace seconds for a request body, then --min-body-rate applies"),
    ] = 10.0,
    min_body_rate: Annotated[
        float, typer.Option(help="bytes/s a request body must arrive at (slower: 408)")
    ] = 64 * 1024.0,
    max_decode_pixels: Annotated[
        int,
        typer.Option(help="most image pixels decoded per prediction request (more: 422)", min=1),
    ] = 2**24,
    group_readable: Annotated[
        bool,
        typer.Option(
            "--group-readable/--owner-only",
            help="service files 0640 / directories 0750 instead of 0600 / 0700",
        ),
    ] = False,
    ledger_mark: Annotated[
        Path | None,
        typer.Option(
            help="the ledger's high-water mark file (default: DIR/service/ledger.mark); on "
            "another volume it also catches a rollback of DIR"
        ),
    ] = None,
    reset_ledger_mark: Annotated[
        bool,
        typer.Option(
            "--reset-ledger-mark",
            help="after restoring an OLDER backup on purpose: accept the ledger as complete "
            "(deletions acknowledged since are lost; re-submit them)",
        ),
    ] = False,
    batch_window_ms: Annotated[
        float,
        typer.Option(
            help="exact mode: predictions arriving within this many ms share one packed pass "
            "(0: off)",
            min=0,
        ),
    ] = 2.0,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop", help="exact mode: the per-shard loop instead of the packed pass (reference)"
        ),
    ] = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve predictions and honour deletion requests over HTTP (docs at /docs)."""
    # deferred (these imports): uvicorn, FastAPI, torch and the service, so --help stays fast
    import uvicorn

    from unlearnkit.runtime.threads import apply_threads
    from unlearnkit.service import (
        SERVED_MODELS,
        DeletionService,
        ServiceConfig,
        TokenStore,
        detect_mode,
    )
    from unlearnkit.service.app import create_app
    from unlearnkit.service.auth import reload_on_sighup
    from unlearnkit.service.metrics import serve_metrics
    from unlearnkit.service.server import check_tls, server_config

    with user_errors():
        if mode != "auto":
            SERVED_MODELS.get(mode)
        if not model_dir.is_dir():
            raise UnlearnkitError(f"--from {model_dir}: not a directory")
        mode = detect_mode(model_dir) if mode == "auto" else mode
        store = TokenStore.from_sources(tokens)
        check_tls(ssl_certfile, ssl_keyfile)
        config = ServiceConfig(
            model_dir=model_dir,
            mode=mode,
            ntk_update=ntk_update,
            background_retrain=background_retrain,
            snapshot_every=snapshot_every,
            max_body_bytes=max_body_bytes,
            max_delete_ids=max_delete_ids,
            max_batch=max_predict_samples,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            max_connections=max_connections,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            min_body_rate=min_body_rate,
            max_decode_pixels=max_decode_pixels,
            group_readable=group_readable,
            ledger_mark=ledger_mark,
            reset_ledger_mark=reset_ledger_mark,
            batch_window_ms=batch_window_ms,
            exact_pass="loop" if loop else "packed",
            torch_threads=apply_threads(threads),  # before torch's first parallel work
            **({"device": device} if device else {}),
            **({"precision": precision} if precision else {}),
        )
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        service = DeletionService(config)
        service.start()
    reload_on_sighup(store)  # kill -HUP <pid>: re-read --tokens
    listener = None
    if metrics_port is not None:
        try:
            listener = serve_metrics(service.metrics, metrics_host, metrics_port)
        except OSError as exc:
            service.close()
            with user_errors():
                raise UnlearnkitError(
                    f"--metrics-port {metrics_port}: cannot listen on {metrics_host} "
                    f"({exc.strerror or exc})"
                ) from None
    for where in (host, *([metrics_host] if listener else [])):
        if where not in LOOPBACK:
            console.print(f"[yellow]warning:[/yellow] listening on {where}, beyond this machine")
    scheme = "https" if ssl_certfile is not None else "http"
    console.print(
        f"unlearnkit serve: {mode} model v{service.model.version} on "
        f"{scheme}://{host}:{port} (docs at /docs; {config.torch_threads} threads)"
        + (f"; metrics on http://{metrics_host}:{listener.port}/metrics" if listener else "")
    )
    try:
        uvicorn.Server(
            server_config(
                create_app(service, store),
                host=host,
                port=port,
                log_level=log_level,
                ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile,
                limit_concurrency=config.max_connections,
                header_timeout_s=config.header_timeout_s,
            )
        ).run()
    finally:
        if listener is not None:
            listener.close()


def mount(main_app: typer.Typer) -> None:
    """Add ``serve`` to the main app."""
    main_app.command("serve")(serve)
