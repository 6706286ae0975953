"""The ``unlearnkit`` command line (Typer): demo, train, unlearn, evaluate, report, methods.

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
    EpochsOpt,
    ForgetOpt,
    ModelOpt,
    OutOpt,
    PeftOpt,
    PretrainOpt,
    SeedsOpt,
    SubsetOpt,
    ThreadsOpt,
    WeightsOpt,
    console,
    make_config,
    parse_params,
    progress_steps,
    refuse_given,
    use_threads,
    user_errors,
)

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


def run_and_write(
    cfg: Any,
    out: Path,
    original: Any = None,
    bundle: Any = None,
    mlflow_experiment: str | None = None,
) -> dict:
    # deferred (here and in every command below): torch and the engines, so --help stays fast
    from unlearnkit.experiment import run_experiment
    from unlearnkit.report import write_run
    from unlearnkit.tracking import log_run, require_mlflow

    if mlflow_experiment is not None:
        require_mlflow()  # a missing extra fails before hours of training, not after

    steps = len(cfg.seeds) * (len(cfg.methods) + (0 if original else 1))
    with progress_steps(steps) as step:
        results = run_experiment(cfg, step, bundle=bundle, original=original)
    write_run(results, out)
    print_summary(results)
    console.print(f"wrote {out}/results.json, report.md and figures")
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
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    mlflow: MlflowOpt = None,
    threads: ThreadsOpt = None,
    subset: SubsetOpt = None,
) -> None:
    """Train on digits, forget a random 10%, compare every method with the retrain reference."""
    with user_errors():
        use_threads(threads)
        cfg = make_config(
            config,
            subset=subset,
            forget=forget,
            seeds=seeds,
            methods=methods,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            epochs=epochs,
        )
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
    epochs: EpochsOpt = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    subset: SubsetOpt = None,
) -> None:
    """Pretrain on the public split, train on D, save the model (safetensors + metadata)."""
    from unlearnkit.recipe import load_bundle, save_trained, train_original
    from unlearnkit.training import accuracy

    with user_errors():
        use_threads(threads)
        cfg = make_config(
            config,
            subset=subset,
            dataset=dataset,
            data_dir=data_dir,
            model=model,
            peft=peft,
            pretrain=pretrain,
            weights=weights,
            epochs=epochs,
            seeds=None,
        )
        bundle = load_bundle(cfg)
        with console.status(f"training {cfg.model} on {cfg.dataset} ({len(bundle.train)} samples)"):
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
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    param: Annotated[
        list[str] | None, typer.Option(help="hyper-parameter KEY=VALUE for the method (repeatable)")
    ] = None,
    mlflow: MlflowOpt = None,
    threads: ThreadsOpt = None,
    subset: SubsetOpt = None,
) -> None:
    """Unlearn a forget set with one method and measure it against retraining."""
    from unlearnkit.methods import METHODS
    from unlearnkit.recipe import open_trained

    with user_errors():
        use_threads(threads)
        params = parse_params(param or [])
        METHODS.create(method, **params)  # bad hyper-parameters fail before any training
        method_params = {method: params} if params else None
        out = out or Path(f"runs/unlearn-{method}")
        if model_dir is None:
            cfg = make_config(
                config,
                subset=subset,
                forget=forget,
                seeds=seeds,
                methods=method,
                dataset=dataset,
                data_dir=data_dir,
                model=model,
                peft=peft,
                pretrain=pretrain,
                weights=weights,
                epochs=epochs,
                method_params=method_params,
            )
            run_and_write(cfg, out, mlflow_experiment=mlflow)
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
            epochs=epochs,
            config=config,
            subset=subset,
        )
        opened = open_trained(model_dir, data_dir)
        cfg = make_config(
            opened.recipe.model_dump(mode="json"),
            forget=forget,
            methods=method,
            method_params=method_params,
            seeds=None,
        ).model_copy(update={"seeds": [opened.trained.seed]})
        run_and_write(cfg, out, opened.trained, opened.bundle, mlflow_experiment=mlflow)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--from", help="directory written by `train`")],
    forget: ForgetOpt = "random:0.1",
    data_dir: DataDirOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy on retain / forget / test and MIA efficacy of a saved model."""
    from unlearnkit.data.forget import select_forget
    from unlearnkit.metrics import accuracy, mia_efficacy
    from unlearnkit.recipe import open_trained

    with user_errors():
        use_threads(threads)
        opened = open_trained(model_dir, data_dir)
        model, train = opened.trained.model, opened.bundle.train
        ids = select_forget(train, forget or "random:0.1", opened.trained.seed)
        retain, forget_split = train.drop_ids(ids), train.select_ids(ids)
        table = Table(title=f"{model_dir} - forget {forget}")
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
        table.add_row(name, cls.summary + note, defaults or "-")
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
