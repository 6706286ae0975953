"""``unlearnkit memorize``: score every training sample's memorization, exactly or by a proxy.

Mounted on the main Typer app by ``mount(app)`` (see ``unlearnkit.cli.app.SUBCOMMAND_MODULES``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from unlearnkit.cli.common import (
    DeviceOpt,
    ImageSizeOpt,
    PrecisionOpt,
    SubsetOpt,
    ThreadsOpt,
    WorkersOpt,
    console,
    console_progress,
    make_config,
    use_runtime,
    user_errors,
)
from unlearnkit.errors import UnlearnkitError


def memorize(
    method: Annotated[
        str,
        typer.Option(
            help="fz (Feldman-Zhang, K subset models) or a proxy: confidence, max_confidence, "
            "neg_entropy, binary_accuracy, curvature, holdout"
        ),
    ] = "fz",
    dataset: Annotated[str | None, typer.Option(help="dataset name")] = None,
    data_dir: Annotated[str | None, typer.Option(help="local folder with the data files")] = None,
    model: Annotated[str | None, typer.Option(help="smallcnn | resnet18 | vit_tiny")] = None,
    peft: Annotated[str | None, typer.Option(help="trainable parameters: full | bn | ...")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs per model", min=0)] = None,
    config: Annotated[Path | None, typer.Option(help="YAML experiment config")] = None,
    k: Annotated[int, typer.Option("--k", help="FZ: number of subset models (>= 2)")] = 100,
    fraction: Annotated[float, typer.Option(help="FZ: share of D per subset model")] = 0.7,
    seed: Annotated[int, typer.Option(help="seed of the subsets / of the proxy run")] = 0,
    label_noise: Annotated[
        float,
        typer.Option(
            help="relabel this share of D at random first (makes memorization visible on "
            "digits); same as dataset 'noisy' with dataset_options {base, label_noise}"
        ),
    ] = 0.0,
    executor: Annotated[str, typer.Option(help="FZ: local | ray")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="FZ: join this Ray cluster (default: start a local one)")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="FZ: models per executor task", min=1)] = 5,
    epoch_grid: Annotated[
        str | None,
        typer.Option(
            help="train until the gap: try these epoch counts in order (e.g. 8,16,32; complete "
            "runs of the original) and score with the first whose train-test gap reaches "
            "--min-gap"
        ),
    ] = None,
    min_gap: Annotated[
        float,
        typer.Option(
            help="train-test accuracy gap (points) --epoch-grid looks for; a proxy run's "
            "original is checked against it too"
        ),
    ] = 5.0,
    out: Annotated[
        Path,
        typer.Option(
            help="output directory (scores.csv + sidecar; FZ keeps its resumable cache here)"
        ),
    ] = Path("runs/memorize"),
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
    workers: WorkersOpt = 0,
) -> None:
    """Score memorization of every training sample; writes OUT/scores.csv (+ .json sidecar)."""
    # deferred: torch and the memorization engine, so --help stays fast
    from unlearnkit.memorization import fz_config, save_scores
    from unlearnkit.memorization.gap import gap_check, parse_epoch_grid, train_until_gap
    from unlearnkit.memorization.pipeline import feldman_zhang_scores, proxy_scores
    from unlearnkit.memorization.proxies import PROXIES
    from unlearnkit.recipe import load_bundle, sized_for
    from unlearnkit.runtime import EXECUTORS, create_executor, thread_report

    with user_errors():
        cfg = make_config(
            config,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            epochs=epochs,
            subset=subset,
            image_size=image_size,
            device=device,
            precision=precision,
        )
        runtime = use_runtime(threads, cfg.device, cfg.precision, workers=workers)
        used = runtime.threads
        if method != "fz" and method not in PROXIES:
            raise UnlearnkitError(
                f"unknown memorization method {method!r}; choose fz or one of: "
                f"{', '.join(PROXIES.names())}"
            )
        fz = fz_config(k=k, fraction=fraction, seed=seed, chunk_size=chunk_size)
        EXECUTORS.get(executor)
        grid = parse_epoch_grid(epoch_grid) if epoch_grid else None
        if label_noise:
            cfg = with_label_noise(cfg, label_noise)
        bundle = load_bundle(cfg)
        gap = None
        if grid:  # the chosen count becomes the recipe the scores describe
            with console_progress():
                cfg, _, checks = train_until_gap(cfg, bundle, min_gap, grid, seed)
            for check in checks:
                console.print(check.message())
            gap = checks[-1]
            console.print(
                f"scoring with {cfg.train.epochs} epochs: unlearn with --epochs "
                f"{cfg.train.epochs} so the model is the one these scores describe"
            )
        if method == "fz":
            options = {"address": ray_address} if executor == "ray" else {}
            try:
                with create_executor(executor, **options) as ex, console_progress() as shown:
                    step = partial(shown, "subset models")  # (models done, models in total)
                    result = feldman_zhang_scores(cfg, bundle, fz, out / "cache", ex, step)
            except KeyboardInterrupt:
                console.print(
                    f"interrupted; finished models are kept in {out / 'cache'} - run the "
                    "same command again to resume (no scores.csv was written)"
                )
                raise typer.Exit(code=130) from None
            table = result.scores
            console.print(
                f"{k} models ({result.trained} trained now, the rest from the "
                f"cache) in {result.wall_seconds:.1f}s wall, "
                f"{result.model_seconds:.1f}s of model training in total"
            )
        else:
            with console_progress():  # the one training run the proxy is recorded during
                tables, run = proxy_scores(cfg, bundle, [method], seed)
            table = tables[method]
            console.print(
                f"{method}: {run.seconds[method]:.2f}s on top of "
                f"{run.train_seconds:.1f}s of training"
            )
            gap = gap_check(run.model, bundle, min_gap, sized_for(cfg, bundle).train.epochs)
            console.print(f"the original: {gap.message()}")
        table.meta["data"] = {"dataset": cfg.dataset, "dataset_options": cfg.dataset_options}
        if gap is not None:
            table.meta["gap"] = gap.as_dict()
        table.meta["machine"] = {
            **thread_report(),
            "threads_requested": used,
            **runtime.describe(),
        }
        path = save_scores(table, out / "scores.csv")
        console.print(
            f"wrote {path} ({len(table)} samples); use it with --forget memorization:high:N:{path}"
        )
        if label_noise:
            console.print(
                "the scores describe the relabelled data: unlearn with a config that has "
                f"dataset: noisy and dataset_options: {cfg.dataset_options}"
            )


def with_label_noise(cfg: Any, share: float) -> Any:
    """The same experiment on dataset ``noisy`` wrapping the configured one."""
    if cfg.dataset == "noisy":
        raise UnlearnkitError("--label-noise with dataset 'noisy': set label_noise in its options")
    options = {"base": cfg.dataset, "label_noise": share}
    if cfg.dataset_options:
        options["base_options"] = cfg.dataset_options
    data = cfg.model_dump(mode="json")
    data.update(dataset="noisy", dataset_options=options)
    return make_config(data)


def mount(app: typer.Typer) -> None:
    """Add ``memorize`` to the main app."""
    app.command("memorize")(memorize)
