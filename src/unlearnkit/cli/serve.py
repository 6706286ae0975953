"""``unlearnkit serve``: start the deletion service over a model directory.

The model is loaded, the ledger checked and replayed before the port opens, so a corrupt ledger
or model file ends the command with one clear line (exit code 2) instead of serving a wrong
model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnkitError

console = Console(stderr=True)


def serve(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="model directory (S3T ensemble or a trained model with an NTK state)"
        ),
    ],
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8000,
    tokens: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON token file; default: the UNLEARNKIT_TOKENS variable"),
    ] = None,
    mode: Annotated[str, typer.Option(help="exact (S3T) | approximate (Fast-NTK)")] = "exact",
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
    threads: Annotated[int, typer.Option(help="torch threads for predictions", min=1)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve predictions and honour deletion requests over HTTP (docs at /docs)."""
    import uvicorn
    from pydantic import ValidationError

    from unlearnkit.errors import validation_message
    from unlearnkit.service.app import create_app
    from unlearnkit.service.auth import TokenStore
    from unlearnkit.service.config import ServiceConfig
    from unlearnkit.service.engine import DeletionService
    from unlearnkit.service.served import SERVED_MODELS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        SERVED_MODELS.get(mode)
        if not model.is_dir():
            raise UnlearnkitError(f"--model {model}: not a directory")
        store = TokenStore.from_sources(tokens)
        try:
            config = ServiceConfig(
                model_dir=model,
                mode=mode,
                ntk_update=ntk_update,
                background_retrain=background_retrain,
                snapshot_every=snapshot_every,
                torch_threads=threads,
            )
        except ValidationError as exc:
            raise UnlearnkitError(validation_message(exc)) from None
        service = DeletionService(config)
        service.start()
    except UnlearnkitError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] listening on {host}, beyond this machine")
    console.print(
        f"unlearnkit serve: {mode} model v{service.model.version} on "
        f"http://{host}:{port} (docs at /docs)"
    )
    uvicorn.run(
        create_app(service, store),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def mount(main_app: typer.Typer) -> None:
    """Add ``serve`` to the main app."""
    main_app.command("serve")(serve)


def main() -> None:
    """Stand-alone entry point (``python -m unlearnkit.service``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve)
    app()
