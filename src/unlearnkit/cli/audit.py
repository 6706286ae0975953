"""``unlearnkit audit``: U-LiRA and the NeurIPS 2023 challenge score for each method.

Mounted on the main Typer app by ``mount(app)`` (see ``unlearnkit.cli.app.SUBCOMMAND_MODULES``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from unlearnkit.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    EpochsOpt,
    ForgetOpt,
    ImageSizeOpt,
    LoaderWorkersOpt,
    ModelOpt,
    PeftOpt,
    PrecisionOpt,
    PretrainOpt,
    SubsetOpt,
    ThreadsOpt,
    WeightsOpt,
    console,
    console_progress,
    make_config,
    parse_params,
    use_runtime,
    user_errors,
)
from unlearnkit.errors import UnlearnkitError


def audit(
    forget: ForgetOpt = None,
    methods: Annotated[
        str | None, typer.Option(help="comma-separated methods (retrain is always audited too)")
    ] = None,
    ensembles: Annotated[
        str | None,
        typer.Option(
            help="exact ensembles audited too, comma-separated (s3t, sisa): deleted vs the same "
            "scheme trained without the forget set"
        ),
    ] = None,
    ensemble_policies: Annotated[
        str | None,
        typer.Option(
            help="deletion policies each ensemble is audited under, comma-separated: eager "
            "(touched shards retrained) and/or manual (blocks switched off only, row "
            "'<scheme>-deactivate')"
        ),
    ] = None,
    ensemble_param: Annotated[
        list[str] | None,
        typer.Option(
            "--ensemble-param", help="an ensemble option KEY=VALUE (num_shards=4, lora_rank=4)"
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="U-LiRA shadow pairs (>= 3)")] = 8,
    n: Annotated[
        int, typer.Option("--n", help="challenge: unlearned / retrained models (>= 2)")
    ] = 8,
    seed: Annotated[int, typer.Option(help="first model seed")] = 0,
    rates: Annotated[
        str, typer.Option(help="challenge FPR/FNR estimate: clopper_pearson | empirical")
    ] = "clopper_pearson",
    thresholds: Annotated[
        str, typer.Option(help="challenge decision rules: single_and_double | single")
    ] = "single_and_double",
    delta: Annotated[float, typer.Option(help="challenge delta")] = 1e-5,
    n_boot: Annotated[int, typer.Option(help="resamples (or role exchanges) per interval")] = 1000,
    interval: Annotated[
        str,
        typer.Option(
            help="U-LiRA intervals: permutation (exact under the null) | pair_jackknife | "
            "pair_bootstrap (the old, too narrow one)"
        ),
    ] = "permutation",
    executor: Annotated[str, typer.Option(help="local | processes | ray")] = "local",
    workers: Annotated[
        int | None, typer.Option(help="processes: worker count (default: the cores)", min=1)
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="ray: join this cluster (default: start a local one)")
    ] = None,
    out: Annotated[Path, typer.Option(help="run directory (written atomically)")] = Path(
        "runs/audit"
    ),
    cache: Annotated[
        Path | None,
        typer.Option(help="finished models' outputs, to resume (default: OUT.cache)"),
    ] = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    peft: PeftOpt = None,
    pretrain: PretrainOpt = None,
    weights: WeightsOpt = None,
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
    loader_workers: LoaderWorkersOpt = 0,
) -> None:
    """Audit unlearning per example: shadow models unlearned vs retrained, U-LiRA AUC / TPR and
    the NeurIPS 2023 challenge score; writes OUT/results.json, report.md, llr_hist.png, llr.csv."""
    # deferred: torch and the engines, so --help stays fast
    from unlearnkit.audit import audit_config, run_audit, write_audit
    from unlearnkit.recipe import load_bundle
    from unlearnkit.runtime import EXECUTORS, create_executor

    with user_errors():
        if executor not in EXECUTORS:
            raise UnlearnkitError(
                f"--executor {executor!r}: choose one of {', '.join(EXECUTORS.names())}"
            )
        settings = audit_config(
            k=k,
            n=n,
            seed=seed,
            rates=rates,
            thresholds=thresholds,
            delta=delta,
            n_boot=n_boot,
            interval=interval,
            ensembles=[e.strip() for e in ensembles.split(",") if e.strip()] if ensembles else None,
            ensemble_options=parse_params(ensemble_param) if ensemble_param else None,
            ensemble_policies=[p.strip() for p in ensemble_policies.split(",") if p.strip()]
            if ensemble_policies
            else None,
        )
        cfg = make_config(
            config,
            subset=subset,
            image_size=image_size,
            forget=forget,
            methods=methods,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            epochs=epochs,
            seeds=None,
            device=device,
            precision=precision,
        )
        use_runtime(threads, cfg.device, cfg.precision, workers=loader_workers)
        bundle = load_bundle(cfg)
        cache_dir = cache or Path(f"{out}.cache")
        options: dict[str, Any] = {}
        if executor == "processes" and workers is not None:
            options["workers"] = workers
        if executor == "ray":
            options["address"] = ray_address
        try:
            with create_executor(executor, **options) as ex, console_progress() as shown:
                step = partial(shown, "shadow models")  # (models done, models in total)
                run = run_audit(cfg, settings, cache_dir, ex, step, bundle=bundle)
        except KeyboardInterrupt:
            console.print(
                f"interrupted; finished models are kept in {cache_dir} - run the same command "
                f"again to resume ({out} was not written)"
            )
            raise typer.Exit(code=130) from None
        write_audit(run, out)
        print_summary(run.results)
        cost = run.results["cost"]
        console.print(
            f"{cost['models']} models ({cost['models_trained_now']} trained now, "
            f"{cost['models_from_cache']} from {cache_dir}) in {cost['wall_seconds']:.1f}s wall; "
            f"wrote {out}/results.json, report.md, llr_hist.png, llr.csv, epsilon.csv"
        )


def print_summary(results: dict[str, Any]) -> None:
    from unlearnkit.audit.output import control_lines, distinguishable_line  # deferred

    table = Table(
        title=f"audit: {results['dataset']} / {results['model']} - forget {results['forget']}"
    )
    columns = ("method", "AUC", "95% CI", "TPR@1%", "TPR@0.1%", "F ours", "F official")
    for col in (*columns, "score ours", "score official"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, s in results["summary"].items():
        ci = s["auc_ci95"]
        table.add_row(
            method if "policy" not in s else f"{method} ({s['policy']})",
            f"{s['auc']:.3f}",
            "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            f"{s['tpr_at_1pct_fpr']:.3f}",
            f"{s['tpr_at_0.1pct_fpr']:.3f}",
            f"{s['forgetting_quality']:.3f}",
            f"{s['forgetting_quality_official']:.3f}",
            f"{s['score']:.3f}",
            f"{s['final_score_official']:.3f}",
        )
    Console().print(table)
    Console().print(distinguishable_line(results), markup=False, highlight=False)
    Console().print(control_lines(results), markup=False, highlight=False)


def mount(app: typer.Typer) -> None:
    """Add ``audit`` to the main app."""
    app.command("audit")(audit)
