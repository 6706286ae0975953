"""``unlearnkit ntk``: incremental deletions with an NTK state kept next to a trained model.

  unlearnkit ntk precompute --from runs/model            # once: stream D, save the state
  unlearnkit ntk delete --from runs/model --ids 3,17,42  # each request: Jacobian of k samples
  unlearnkit ntk status --from runs/model

The state (``DIR/ntk_state.safetensors``) is tied to w0, the trainable names, the data and
lambda; a stale one is refused. Every delete validates all ids before changing anything, then
rewrites the state atomically and the served model ``DIR/ntk_model.safetensors``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnkitError
from unlearnkit.id_lists import parse_ids

app = typer.Typer(
    help="Fast-NTK incremental deletions with an NTK state on disk.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

STATE_FILE, SERVED_FILE = "ntk_state.safetensors", "ntk_model.safetensors"
FromOpt = Annotated[Path, typer.Option("--from", help="directory written by `unlearnkit train`")]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code=2)


def _load(directory: Path) -> tuple[Any, Any, Any]:
    """(trained model, data bundle, fingerprint parts) of a model directory."""
    from unlearnkit.experiment import load_bundle
    from unlearnkit.store import check_fingerprint, load_trained

    trained, cfg, meta = load_trained(directory)
    bundle = load_bundle(cfg)
    check_fingerprint(meta, bundle, directory)
    return trained, bundle, cfg


@app.command()
def precompute(
    model_dir: FromOpt,
    lam: Annotated[float, typer.Option(help="ridge lambda", min=0.0)] = 0.1,
    chunk_size: Annotated[int, typer.Option(help="samples per Jacobian chunk", min=1)] = 64,
    max_memory_gb: Annotated[float | None, typer.Option(help="memory budget in GiB")] = None,
) -> None:
    """Stream the Jacobians of D once and save A, b and (A + lambda I)^-1 next to the model."""
    from unlearnkit.ntk.incremental import precompute_state

    try:
        trained, bundle, _ = _load(model_dir)
        start = time.perf_counter()
        state = precompute_state(
            trained.model,
            trained.trainable,
            trained.initial_state,
            bundle.train,
            bundle.num_classes,
            lam,
            chunk_size,
            data_fingerprint=bundle.train.fingerprint(),
            budget=None if max_memory_gb is None else int(max_memory_gb * 2**30),
            progress=True,
        )
        state.save(model_dir / STATE_FILE)
    except UnlearnkitError as exc:
        _fail(str(exc))
    console.print(
        f"NTK state over {state.num_params} parameters and {len(state.ids)} samples "
        f"in {time.perf_counter() - start:.1f}s -> {model_dir / STATE_FILE}"
    )


@app.command()
def delete(
    model_dir: FromOpt,
    ids: Annotated[str, typer.Option(help="sample ids: 3,17,42 or @file")],
    mode: Annotated[
        str, typer.Option(help="linearized (exact for the linear model) | paper")
    ] = "linearized",
    scale: Annotated[str, typer.Option(help="paper mode: angle | none")] = "angle",
) -> None:
    """Delete samples: their Jacobian + a Woodbury downdate; writes the state and served model."""
    from unlearnkit.models.checkpoint import save_checkpoint
    from unlearnkit.ntk.incremental import delete_samples, state_fingerprint
    from unlearnkit.ntk.state import NTKState
    from unlearnkit.ntk.update import Solutions, apply_paper_update, linearized_model

    try:
        if mode not in ("linearized", "paper") or scale not in ("angle", "none"):
            raise UnlearnkitError(
                f"--mode {mode!r} / --scale {scale!r}: choose mode linearized "
                "or paper, scale angle or none"
            )
        wanted = parse_ids(ids)
        trained, bundle, _ = _load(model_dir)
        state = NTKState.load(model_dir / STATE_FILE)
        state.check(
            state_fingerprint(
                trained.initial_state, trained.trainable, bundle.train.fingerprint(), state.lam
            ),
            model_dir / STATE_FILE,
        )
        import torch

        state.positions(torch.tensor(wanted))  # unknown / deleted ids: refuse, nothing changed
        start = time.perf_counter()
        delete_samples(trained.model, state, trained.initial_state, bundle.train.select_ids(wanted))
        took = time.perf_counter() - start
        if mode == "linearized":
            served = linearized_model(
                trained.model, trained.trainable, trained.initial_state, state.solution
            )
        else:
            served = trained.model
            sol = Solutions(state.solution_full, state.solution, "primal")
            apply_paper_update(served, trained.trainable, trained.initial_state, sol, scale)
        state.save(model_dir / STATE_FILE)
        save_checkpoint(
            model_dir / SERVED_FILE,
            served,
            {
                "kind": f"fast_ntk-{mode}",
                "w0": "initial.safetensors",
                "deleted": state.deleted_ids.tolist(),
                "trainable": trained.trainable,
            },
        )
    except UnlearnkitError as exc:
        _fail(str(exc))
    console.print(
        f"deleted {len(wanted)} samples in {took:.2f}s "
        f"({int((~state.alive).sum())} deleted so far); served model -> "
        f"{model_dir / SERVED_FILE}"
    )


@app.command()
def status(model_dir: FromOpt) -> None:
    """Show the NTK state: size, lambda, deletions so far, and whether it is current."""
    from unlearnkit.ntk.incremental import state_fingerprint
    from unlearnkit.ntk.state import NTKState

    try:
        state = NTKState.load(model_dir / STATE_FILE)
        trained, bundle, _ = _load(model_dir)
        current = "current"
        try:
            state.check(
                state_fingerprint(
                    trained.initial_state, trained.trainable, bundle.train.fingerprint(), state.lam
                )
            )
        except UnlearnkitError as exc:
            current = f"STALE ({exc})"
    except UnlearnkitError as exc:
        _fail(str(exc))
    deleted = state.deleted_ids.tolist()
    shown = ", ".join(map(str, deleted[:20])) + (" ..." if len(deleted) > 20 else "")
    sys.stdout.write(
        f"parameters: {state.num_params}\nsamples: {len(state.ids)}\n"
        f"deleted: {len(deleted)} [{shown}]\nlambda: {state.lam}\n"
        f"state: {current}\n"
    )


def mount(main_app: typer.Typer) -> None:
    """Add ``ntk`` to the main app."""
    main_app.add_typer(app, name="ntk")
