"""The ``unlearnkit`` command line (Typer): demo, train, unlearn, evaluate, report, methods,
models, datasets.

User mistakes end with one line on stderr and exit code 2, never a traceback, and nothing is
written before every input has been validated.
"""

from __future__ import annotations

# deferred imports: every command imports torch and the engines on use, so that
# `unlearnkit --help` and a mistyped flag answer in well under a second
import importlib
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
    HeadOpt,
    ImageSizeOpt,
    ModelOpt,
    ModelOptionOpt,
    OutOpt,
    PeftOpt,
    PrecisionOpt,
    PretrainOpt,
    SeedsOpt,
    SkipBadOpt,
    SubsetOpt,
    ThreadsOpt,
    VerifyContentOpt,
    WeightsOpt,
    WeightsSkipHeadOpt,
    WorkersOpt,
    console,
    console_progress,
    make_config,
    parse_params,
    progress_steps,
    refuse_given,
    use_runtime,
    user_errors,
    warn_skipped,
)
from unlearnkit.cli.export import export
from unlearnkit.errors import UnlearnkitError

MlflowOpt = Annotated[
    str | None,
    typer.Option("--mlflow", help="also log the run to this MLflow experiment (tracking extra)"),
]
MethodsOpt = Annotated[str | None, typer.Option(help="comma-separated method names")]

app = typer.Typer(
    help="Machine unlearning: exact (S3T, SISA), one-shot (Fast-NTK) and "
    "memorization-aware (RUM), measured against retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def print_summary(results: dict[str, Any]) -> None:
    from unlearnkit.report import relearn_cell, result_warnings  # deferred: torch

    n = len(results["seeds"])
    table = Table(
        title=f"{results['dataset']} / {results['model']} - forget {results['forget']} "
        f"({n} seed{'s' if n != 1 else ''})"
    )
    for col in ("method", "retain %", "forget %", "test %", "MIA %", "ToW", "relearn", "time s"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for method, s in results["summary"].items():
        table.add_row(
            method,
            f"{s['acc_retain_mean']:.1f}",
            f"{s['acc_forget_mean']:.1f}",
            f"{s['acc_test_mean']:.1f}",
            f"{s['mia_efficacy_mean']:.1f}",
            f"{s['tow_mean']:.3f}",
            relearn_cell(s),
            f"{s['time_s_mean']:.2f}",
        )
    Console().print(table)
    for line in result_warnings(results):
        console.print(f"[yellow]warning:[/yellow] {line}")


def unlearned_dir_name(seed: int, seeds: list[int]) -> str:
    """``model`` for a single-seed run, ``model-seed<K>`` for each seed of a multi-seed run."""
    return "model" if len(seeds) == 1 else f"model-seed{seed}"


def run_and_write(
    cfg: Any,
    out: Path,
    original: Any = None,
    bundle: Any = None,
    mlflow_experiment: str | None = None,
    keep_method: str | None = None,
    parent: Path | None = None,
) -> dict:
    """Run the comparison and write the run directory; with ``keep_method``, that method's
    unlearned model of each seed is saved inside it as a model directory (``model``)."""
    # deferred (here and in every command below): torch and the engines, so --help stays fast
    from unlearnkit.experiment import run_experiment
    from unlearnkit.recipe import load_bundle
    from unlearnkit.recipe.unlearned import capture_unlearned, save_unlearned
    from unlearnkit.report import write_run
    from unlearnkit.tracking import log_run, require_mlflow

    if mlflow_experiment is not None:
        require_mlflow()  # a missing extra fails before hours of training, not after

    kept: dict[int, Any] = {}
    skipped: list[int] = []

    def keep(name: str, params: Any, ctx: Any, model: Any) -> None:
        if name != keep_method:
            return
        captured = capture_unlearned(
            name, dict(params), ctx.model, model, ctx.initial_state,
            ctx.trainable, ctx.seed, ctx.forget.ids, cfg.forget,
        )  # fmt: skip
        if captured is None:
            skipped.append(ctx.seed)
        else:
            kept[ctx.seed] = captured

    if keep_method is not None and bundle is None:
        bundle = load_bundle(cfg)  # the same bundle for the run and the saved models' metadata
    steps = len(cfg.seeds) * (len(cfg.methods) + (0 if original else 1))
    with progress_steps(steps) as step:
        results = run_experiment(
            cfg, step, bundle=bundle, original=original,
            on_unlearned=keep if keep_method else None,
        )  # fmt: skip

    def write_models(staging: Path) -> None:
        for seed, model in kept.items():
            where = staging / unlearned_dir_name(seed, cfg.seeds)
            save_unlearned(where, model, cfg, bundle, parent)

    write_run(results, out, extras=[write_models] if kept else [])
    print_summary(results)
    console.print(f"wrote {out}/results.json, report.md and figures")
    for seed in kept:
        where = out / unlearned_dir_name(seed, cfg.seeds)
        console.print(f"saved the unlearned model to {where} (evaluate, export or serve it)")
    if skipped:
        console.print(
            f"{keep_method} returns a linearised model, not new weights: no model directory is "
            "written for it; deploy it with `unlearnkit ntk precompute` and "
            "`unlearnkit serve --mode approximate` (or use --param mode=paper)"
        )
    if mlflow_experiment is not None:
        run_id = log_run(results, out, mlflow_experiment)
        console.print(f"logged to MLflow experiment {mlflow_experiment!r}, run {run_id}")
    return results


@app.command()
def demo(
    out: OutOpt = Path("runs/demo"),
    forget: ForgetOpt = None,
    seeds: SeedsOpt = None,
    methods: MethodsOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    peft: PeftOpt = None,
    pretrain: PretrainOpt = None,
    weights: WeightsOpt = None,
    weights_skip_head: WeightsSkipHeadOpt = None,
    model_option: ModelOptionOpt = None,
    head: HeadOpt = None,
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    mlflow: MlflowOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = 0,
    subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
) -> None:
    """Train on digits, forget a random 10%, compare every method with the retrain reference."""
    with user_errors():
        cfg = make_config(
            config,
            subset=subset,
            image_size=image_size,
            forget=forget,
            seeds=seeds,
            methods=methods,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            weights_skip_head=weights_skip_head,
            model_option=model_option,
            head=head,
            epochs=epochs,
            device=device,
            precision=precision,
        )
        use_runtime(threads, cfg.device, cfg.precision, workers=workers)
        run_and_write(cfg, out, mlflow_experiment=mlflow)


@app.command("train")
def train_cmd(
    out: OutOpt = Path("runs/model"),
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    peft: PeftOpt = None,
    pretrain: PretrainOpt = None,
    weights: WeightsOpt = None,
    weights_skip_head: WeightsSkipHeadOpt = None,
    model_option: ModelOptionOpt = None,
    head: HeadOpt = None,
    epochs: EpochsOpt = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = 0,
    subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
    skip_bad_images: SkipBadOpt = None,
) -> None:
    """Pretrain on the public split, train on D, save the model (safetensors + metadata)."""
    from unlearnkit.recipe import load_bundle, save_trained, train_original
    from unlearnkit.training import accuracy

    with user_errors():
        cfg = make_config(
            config,
            subset=subset,
            image_size=image_size,
            skip_bad_images=skip_bad_images,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            weights_skip_head=weights_skip_head,
            model_option=model_option,
            head=head,
            epochs=epochs,
            seeds=None,
            device=device,
            precision=precision,
        )
        use_runtime(threads, cfg.device, cfg.precision, workers=workers)
        bundle = load_bundle(cfg)
        warn_skipped(bundle.skipped)
        with console_progress():  # a bar in a terminal, else a "train: k/n" line every 10 s
            trained = train_original(cfg, bundle, seed)
        save_trained(out, trained, cfg, bundle)
        console.print(
            f"train acc {accuracy(trained.model, bundle.train):.1f}%, test acc "
            f"{accuracy(trained.model, bundle.test):.1f}%; saved to {out}"
        )


@app.command()
def unlearn(
    method: Annotated[str, typer.Option(help="method name (see `unlearnkit methods`)")],
    forget: ForgetOpt = None,
    model_dir: Annotated[
        Path | None,
        typer.Option("--from", help="model directory written by `unlearnkit train` (else train)"),
    ] = None,
    out: OutOpt = None,
    seeds: SeedsOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    peft: PeftOpt = None,
    pretrain: PretrainOpt = None,
    weights: WeightsOpt = None,
    weights_skip_head: WeightsSkipHeadOpt = None,
    model_option: ModelOptionOpt = None,
    head: HeadOpt = None,
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    param: Annotated[
        list[str] | None, typer.Option(help="hyper-parameter KEY=VALUE for the method (repeatable)")
    ] = None,
    mlflow: MlflowOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = 0,
    verify_content: VerifyContentOpt = False,
    subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
) -> None:
    """Unlearn a forget set with one method, measure it against retraining, save the model.

    The unlearned model is written to OUT/model (OUT/model-seed<K> with several seeds), a model
    directory that `evaluate`, `export` and `serve` take with --from."""
    from unlearnkit.methods import METHODS
    from unlearnkit.recipe import open_trained
    from unlearnkit.recipe.unlearned import refuse_unlearned_parent

    with user_errors():
        params = parse_params(param or [])
        METHODS.create(method, **params)  # bad hyper-parameters fail before any training
        method_params = {method: params} if params else None
        out = out or Path(f"runs/unlearn-{method}")
        if model_dir is None and verify_content:
            raise UnlearnkitError(
                "--verify-content checks a saved model's image folder: give --from"
            )
        if model_dir is None:
            cfg = make_config(
                config,
                subset=subset,
                image_size=image_size,
                forget=forget,
                seeds=seeds,
                methods=method,
                dataset=dataset,
                data_dir=data_dir,
                model=model,
                peft=peft,
                pretrain=pretrain,
                weights=weights,
                weights_skip_head=weights_skip_head,
                model_option=model_option,
                head=head,
                epochs=epochs,
                method_params=method_params,
                device=device,
                precision=precision,
            )
            use_runtime(threads, cfg.device, cfg.precision, workers=workers)
            run_and_write(cfg, out, mlflow_experiment=mlflow, keep_method=method)
            return
        refuse_given(
            "unlearn --from",
            "the saved model fixes its recipe and seed (give --data-dir if its data moved)",
            seeds=seeds,
            dataset=dataset,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            weights_skip_head=weights_skip_head,
            model_option=model_option,
            head=head,
            epochs=epochs,
            config=config,
            subset=subset,
            image_size=image_size,
        )
        opened = open_trained(model_dir, data_dir, verify_content)
        refuse_unlearned_parent(opened.meta, model_dir)
        cfg = make_config(
            opened.recipe.model_dump(mode="json"),
            forget=forget,
            methods=method,
            method_params=method_params,
            seeds=None,
            device=device,
            precision=precision,
        ).model_copy(update={"seeds": [opened.trained.seed]})
        use_runtime(threads, cfg.device, cfg.precision, workers=workers)
        run_and_write(
            cfg, out, opened.trained, opened.bundle, mlflow, keep_method=method, parent=model_dir
        )


@app.command()
def evaluate(
    model_dir: Annotated[
        Path, typer.Option("--from", help="model directory written by `train` or `unlearn`")
    ],
    forget: Annotated[
        str | None,
        typer.Option(
            help="class:K | random:N | random:0.1 | indices:PATH (default: the forget set an "
            "unlearned model records, else random:0.1)"
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    workers: WorkersOpt = 0,
    verify_content: VerifyContentOpt = False,
) -> None:
    """Accuracy on retain / forget / test and MIA efficacy of a saved (or unlearned) model."""
    import torch

    from unlearnkit.data.forget import select_forget
    from unlearnkit.metrics import accuracy, mia_efficacy
    from unlearnkit.recipe import open_trained
    from unlearnkit.recipe.unlearned import unlearning_record

    with user_errors():
        use_runtime(threads, device, precision, workers=workers)
        opened = open_trained(model_dir, data_dir, verify_content)
        model, train = opened.trained.model, opened.bundle.train
        record = unlearning_record(opened.meta)
        if forget is None and record is not None:
            ids = torch.tensor(record["forget_ids"], dtype=torch.long)
            title = f"{model_dir} ({record['method']}) - its forget set ({len(ids)} samples)"
        else:
            spec = forget or "random:0.1"
            ids = select_forget(train, spec, opened.trained.seed)
            title = f"{model_dir} - forget {spec}"
        retain, forget_split = train.drop_ids(ids), train.select_ids(ids)
        table = Table(title=title)
        for col in ("retain %", "forget %", "test %", "MIA efficacy %"):
            table.add_column(col, justify="right")
        table.add_row(
            *(
                f"{v:.1f}"
                for v in (
                    accuracy(model, retain),
                    accuracy(model, forget_split),
                    accuracy(model, opened.bundle.test),
                    mia_efficacy(model, retain, forget_split, opened.bundle.test),
                )
            )
        )
        Console().print(table)


app.command("export")(export)  # cheap to import (no torch until it runs), so a core command


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with results.json")],
) -> None:
    """Re-create report.md and the figures from a run's results.json."""
    from unlearnkit.report import load_results, write_report

    with user_errors():
        results = load_results(run_dir)
        for path in write_report(results, run_dir):
            console.print(f"wrote {path}")


@app.command()
def methods() -> None:
    """List the unlearning methods and their hyper-parameters (with defaults)."""
    from unlearnkit.methods import METHODS

    table = Table(title="unlearning methods")
    for col in ("name", "what it does", "hyper-parameters (defaults)"):
        table.add_column(col)
    for name in METHODS.names():
        cls = METHODS.get(name)
        defaults = ", ".join(f"{k}={v}" for k, v in cls.Params().model_dump().items())
        note = "" if cls.in_default_run else " (run only when named in --methods)"
        provider = METHODS.provider(name)
        note += f" (plugin: {provider})" if provider else ""
        table.add_row(name, cls.summary + note, defaults or "-")
    Console(width=160).print(table)


@app.command()
def models() -> None:
    """List the registered models (built in and from plugins) and the other ways to name one."""
    from rich.markup import escape

    from unlearnkit.models import catalogue

    table = Table(title="models (--model)")
    for col in ("name", "what it is"):
        table.add_column(col)
    for name, summary in catalogue():
        table.add_row(escape(name), escape(summary))
    Console(width=160).print(table)


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from unlearnkit.data import DATASETS

    for name in DATASETS.names():
        typer.echo(name)


# Feature areas add their own sub-commands: each module has ``mount(app)``. Imported lazily so
# ``unlearnkit --help`` does not pay for FastAPI or Ray.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "unlearnkit.cli.ntk",
    "unlearnkit.cli.memorize",
    "unlearnkit.cli.serve",
    "unlearnkit.cli.exact",
    "unlearnkit.cli.audit",
)


def mount_subcommands(target: typer.Typer) -> None:
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).mount(target)


def main() -> None:
    mount_subcommands(app)
    with user_errors():  # the one guard, also around sub-commands
        app()
