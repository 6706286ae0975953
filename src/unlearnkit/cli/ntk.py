"""``unlearnkit ntk``: incremental deletions with an NTK state kept next to a trained model.

  unlearnkit ntk precompute --from runs/model            # once: stream D, save the state
  unlearnkit ntk precompute --from runs/model --workers 8 --executor local|ray
  unlearnkit ntk delete --from runs/model --ids 3,17,42  # each request: Jacobian of k samples
  unlearnkit ntk status --from runs/model

An interrupted precompute keeps its finished shards in ``DIR/ntk_state.safetensors.parts/``
and the next run continues from there.

The state (``DIR/ntk_state.safetensors``) is tied to w0, the trainable names, the data and
lambda; a stale one is refused. Every delete validates all ids before changing anything, then
rewrites the state atomically and the served model ``DIR/ntk_model.safetensors``.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from unlearnkit.cli.common import (
    DataDirOpt,
    DeviceOpt,
    IdsOpt,
    LoaderWorkersOpt,
    ModelDirOpt,
    PrecisionOpt,
    ThreadsOpt,
    console,
    use_runtime,
    user_errors,
)
from unlearnkit.errors import UnlearnkitError
from unlearnkit.id_lists import parse_ids

app = typer.Typer(
    help="Fast-NTK incremental deletions with an NTK state on disk.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SERVED_FILE = "ntk_model.safetensors"
# fast_ntk's defaults (methods/fast_ntk.py; tests/ntk/test_ntk_cli.py checks they agree), kept
# here as literals so that --help needs no torch
DEFAULT_TARGET = "scaled"
DEFAULT_TARGET_SCALE = 10.0


@app.command()
def precompute(
    model_dir: ModelDirOpt,
    lam: Annotated[float, typer.Option(help="ridge lambda", min=0.0)] = 0.1,
    chunk_size: Annotated[int, typer.Option(help="samples per Jacobian chunk", min=1)] = 64,
    max_memory_gb: Annotated[float | None, typer.Option(help="memory budget in GiB")] = None,
    workers: Annotated[
        int, typer.Option(help="processes (local) or Ray tasks, one thread each", min=1)
    ] = 1,
    executor: Annotated[str, typer.Option(help="local (a process pool) | ray")] = "local",
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    kernel: Annotated[
        str, typer.Option(help="exact | pntk (pseudo-NTK: approximate, C times cheaper)")
    ] = "exact",
    shard_size: Annotated[
        int | None, typer.Option(help="samples per resumable shard (default: by N, workers)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="join this Ray cluster (default: start one here)")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="stop after this many seconds, keep the finished shards (exit 3); run again "
            "to resume",
            min=1.0,
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            help="ridge targets: scaled (s (onehot - 1/C), logits on a cross-entropy scale) | "
            "onehot (logits on a 0-1 scale, a nearly flat softmax)"
        ),
    ] = DEFAULT_TARGET,
    target_scale: Annotated[
        float, typer.Option(help="s of --target scaled", min=0.0, max=1000.0)
    ] = DEFAULT_TARGET_SCALE,
    data_dir: DataDirOpt = None,
    loader_workers: LoaderWorkersOpt = 0,
) -> None:
    """Stream the Jacobians of D once and save A, b and (A + lambda I)^-1 next to the model."""
    from unlearnkit.ntk.deployment import STATE_FILE, target_value  # deferred: torch
    from unlearnkit.ntk.incremental import precompute_state_file  # deferred: torch
    from unlearnkit.ntk.precompute import (  # deferred: torch
        PrecomputeIncomplete,
        check_options,
    )
    from unlearnkit.recipe import open_trained  # deferred: torch

    resume = f"interrupted; finished shards are kept in {model_dir}/*.parts, run again to resume"
    with user_errors(interrupted=resume):
        check_options(kernel, executor, workers)
        scale = target_value(target, target_scale)
        # this process; pool workers are pinned to one thread (one GPU each on CUDA)
        used = use_runtime(threads, device, precision, workers=loader_workers).threads
        opened = open_trained(model_dir, data_dir)
        trained, train = opened.trained, opened.bundle.train
        start = time.perf_counter()
        try:
            state = precompute_state_file(
                model_dir / STATE_FILE,
                trained.model,
                trained.trainable,
                trained.initial_state,
                train,
                opened.bundle.num_classes,
                lam,
                chunk_size,
                data_fingerprint=train.fingerprint(),
                budget=None if max_memory_gb is None else int(max_memory_gb * 2**30),
                progress=True,
                kernel=kernel,
                workers=workers,
                executor=executor,
                shard_size=shard_size,
                ray_address=ray_address,
                time_budget_s=time_budget,
                target_scale=scale,
            )
        except PrecomputeIncomplete as stop:
            console.print(str(stop))
            raise typer.Exit(code=3) from None
        took = time.perf_counter() - start
        note = " (pseudo-NTK: approximate)" if state.approximate else ""
        console.print(
            f"NTK state{note} over {state.num_params} parameters and {len(state.ids)} samples "
            f"in {took:.1f}s ({len(state.ids) / max(took, 1e-9):.1f} samples/s; {workers} "
            f"{executor} worker(s), {used} thread(s) here) -> {model_dir / STATE_FILE}"
        )


@app.command()
def delete(
    model_dir: ModelDirOpt,
    ids: IdsOpt,
    mode: Annotated[
        str, typer.Option(help="linearized (exact for the linear model) | paper")
    ] = "linearized",
    scale: Annotated[str, typer.Option(help="paper mode: angle | none")] = "angle",
    data_dir: DataDirOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    loader_workers: LoaderWorkersOpt = 0,
) -> None:
    """Delete samples: their Jacobian + a Woodbury downdate; writes the state and served model."""
    import torch  # deferred: torch, so --help stays fast

    from unlearnkit.models.checkpoint import save_checkpoint  # deferred: torch
    from unlearnkit.ntk.deployment import (  # deferred: torch
        STATE_FILE,
        check_update,
        open_state,
        receipt_kind,
        state_solutions,
        unlearned_model,
    )
    from unlearnkit.ntk.incremental import delete_samples  # deferred: torch
    from unlearnkit.recipe import open_trained  # deferred: torch

    with user_errors():
        check_update(mode, scale)
        # the deleted samples' Jacobians run on the device
        use_runtime(threads, device, workers=loader_workers)
        wanted = parse_ids(ids)
        opened = open_trained(model_dir, data_dir)
        trained, train = opened.trained, opened.bundle.train
        state = open_state(
            model_dir / STATE_FILE, trained.initial_state, trained.trainable, train.fingerprint()
        )
        state.positions(torch.tensor(wanted))  # unknown / deleted ids: refuse, nothing changed
        start = time.perf_counter()
        delete_samples(trained.model, state, trained.initial_state, train.select_ids(wanted))
        took = time.perf_counter() - start
        served = unlearned_model(
            trained.model,
            trained.trainable,
            trained.initial_state,
            state_solutions(state),
            mode,
            scale,
        )
        state.save(model_dir / STATE_FILE, keep_full=mode == "paper")  # erasure (state.py)
        save_checkpoint(
            model_dir / SERVED_FILE,
            served,
            {
                "kind": receipt_kind(f"fast_ntk-{mode}", state),
                "approximate": state.approximate,
                "w0": "initial.safetensors",
                "deleted": state.deleted_ids.tolist(),
                "trainable": trained.trainable,
                "target": state.fingerprint.get("target", "onehot"),
            },
        )
        console.print(
            f"deleted {len(wanted)} samples in {took:.2f}s "
            f"({int((~state.alive).sum())} deleted so far); served model -> "
            f"{model_dir / SERVED_FILE}"
        )


@app.command()
def status(model_dir: ModelDirOpt, data_dir: DataDirOpt = None) -> None:
    """Show the NTK state: size, lambda, deletions so far, and whether it is current."""
    from unlearnkit.ntk.deployment import STATE_FILE  # deferred: torch, so --help stays fast
    from unlearnkit.ntk.incremental import state_fingerprint  # deferred: torch
    from unlearnkit.ntk.state import NTKState  # deferred: torch
    from unlearnkit.recipe import open_trained  # deferred: torch

    with user_errors():
        state = NTKState.load(model_dir / STATE_FILE)
        opened = open_trained(model_dir, data_dir)
        trained = opened.trained
        current = "current"
        try:
            state.check(
                state_fingerprint(
                    trained.initial_state,
                    trained.trainable,
                    opened.bundle.train.fingerprint(),
                    state.lam,
                    state.target_scale,
                )
            )
        except UnlearnkitError as exc:
            current = f"STALE ({exc})"
    deleted = state.deleted_ids.tolist()
    shown = ", ".join(map(str, deleted[:20])) + (" ..." if len(deleted) > 20 else "")
    sys.stdout.write(
        f"parameters: {state.num_params}\nsamples: {len(state.ids)}\n"
        f"deleted: {len(deleted)} [{shown}]\nlambda: {state.lam}\n"
        f"kernel: {state.kernel}{' (approximate)' if state.approximate else ''}\n"
        f"target: {state.fingerprint.get('target', 'onehot')}\n"
        f"state: {current}\n"
    )


def mount(main_app: typer.Typer) -> None:
    """Add ``ntk`` to the main app."""
    main_app.add_typer(app, name="ntk")
