"""``unlearnkit export``: a saved model as a file a user's own serving stack can load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearnkit.cli.common import ModelDirOpt, console, user_errors


def export(
    model_dir: ModelDirOpt,
    out: Annotated[Path, typer.Option(help="file to write (.safetensors, .pt, .pt2)")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="safetensors (state dict) | torchscript (torch.jit) | exported (torch.export "
            ".pt2); default: from the suffix of --out",
        ),
    ] = None,
) -> None:
    """Export a trained or unlearned model directory (plus a JSON sidecar: shapes, preprocessing,
    lineage, SHA-256)."""
    # deferred: torch and the recipe load on use, so `unlearnkit --help` stays fast
    from unlearnkit.recipe.export import export_model

    with user_errors():
        sidecar = export_model(model_dir, out, fmt)
        console.print(f"wrote {out} ({sidecar['format']}) and {out}.json")
