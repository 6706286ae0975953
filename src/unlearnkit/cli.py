"""The ``unlearnkit`` command line (Typer): demo, train, unlearn, evaluate, report, methods.

User mistakes end with one line on stderr and exit code 2, never a traceback, and nothing is
written before every input has been validated.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearnkit.errors import UnlearnkitError

app = typer.Typer(
    help="Machine unlearning: exact (S3T, SISA), one-shot (Fast-NTK) and "
    "memorization-aware (RUM), measured against retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

DatasetOpt = Annotated[str | None, typer.Option(help="dataset name (see `unlearnkit datasets`)")]
DataDirOpt = Annotated[str | None, typer.Option(help="local folder with the data files")]
ModelOpt = Annotated[str | None, typer.Option(help="smallcnn | resnet18 | vit_tiny")]
PeftOpt = Annotated[str | None, typer.Option(help="trainable parameters: full | bn | ...")]
ForgetOpt = Annotated[
    str | None, typer.Option(help="class:K | random:N | random:0.1 | indices:PATH")
]
SeedsOpt = Annotated[int | None, typer.Option(help="number of seeds (0..N-1)", min=1)]
EpochsOpt = Annotated[int | None, typer.Option(help="training epochs on D", min=0)]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML experiment config; flags override")]
OutOpt = Annotated[Path | None, typer.Option(help="output directory")]
PretrainOpt = Annotated[
    bool | None,
    typer.Option(
        "--pretrain/--no-pretrain", help="pretrain the backbone on a disjoint public split first"
    ),
]
MlflowOpt = Annotated[
    str | None,
    typer.Option("--mlflow", help="also log the run to this MLflow experiment (tracking extra)"),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(help="local backbone checkpoint (.safetensors or .pth) to start from instead"),
]


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Any:
    """Turn user mistakes into one clean line and exit code 2."""
    try:
        yield
    except UnlearnkitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("interrupted; nothing partial was written")
        raise typer.Exit(code=130) from None


def make_config(config: Path | dict[str, Any] | None, **overrides: Any) -> Any:
    """A validated config from a YAML file (or a dict) with the given flags on top."""
    from unlearnkit.config import build_config, load_config_file

    base = (
        dict(config) if isinstance(config, dict) else (load_config_file(config) if config else {})
    )
    seeds = overrides.pop("seeds", None)
    methods = overrides.pop("methods", None)
    epochs = overrides.pop("epochs", None)
    if seeds is not None:
        overrides["seeds"] = list(range(seeds))
    if methods is not None:
        overrides["methods"] = [m.strip() for m in methods.split(",") if m.strip()]
    if epochs is not None:
        overrides["train"] = {**base.get("train", {}), "epochs": epochs}
    return build_config(base, **overrides)


@contextmanager
def progress_steps(total: int) -> Any:
    """A rich progress bar advanced by a ``step(message)`` callback."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with bar:
        task = bar.add_task("starting", total=total)

        def step(message: str) -> None:
            bar.update(task, description=message, advance=1)

        yield step
        bar.update(task, description="done", completed=total)


def print_summary(results: dict[str, Any]) -> None:
    table = Table(title=f"{results['dataset']} / {results['model']} - forget {results['forget']}")
    for col in ("method", "retain %", "forget %", "test %", "MIA %", "ToW", "relearn", "time s"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for method, s in results["summary"].items():
        relearn = s["relearn_epochs_mean"]
        table.add_row(
            method,
            f"{s['acc_retain_mean']:.1f}",
            f"{s['acc_forget_mean']:.1f}",
            f"{s['acc_test_mean']:.1f}",
            f"{s['mia_efficacy_mean']:.1f}",
            f"{s['tow_mean']:.3f}",
            "-" if relearn is None else f"{relearn:.1f}",
            f"{s['time_s_mean']:.2f}",
        )
    Console().print(table)


def run_and_write(
    cfg: Any,
    out: Path,
    original: Any = None,
    bundle: Any = None,
    mlflow_experiment: str | None = None,
) -> dict:
    from unlearnkit.experiment import run_experiment
    from unlearnkit.report import write_run

    if mlflow_experiment is not None:
        from unlearnkit.tracking import require_mlflow

        require_mlflow()  # a missing extra fails before hours of training, not after

    steps = len(cfg.seeds) * (len(cfg.methods) + (0 if original else 1))
    with progress_steps(steps) as step:
        results = run_experiment(cfg, step, bundle=bundle, original=original)
    write_run(results, out)
    print_summary(results)
    console.print(f"wrote {out}/results.json, report.md and figures")
    if mlflow_experiment is not None:
        from unlearnkit.tracking import log_run

        run_id = log_run(results, out, mlflow_experiment)
        console.print(f"logged to MLflow experiment {mlflow_experiment!r}, run {run_id}")
    return results


@app.command()
def demo(
    out: OutOpt = Path("runs/demo"),
    forget: ForgetOpt = None,
    seeds: SeedsOpt = None,
    methods: Annotated[str | None, typer.Option(help="comma-separated method names")] = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    peft: PeftOpt = None,
    pretrain: PretrainOpt = None,
    weights: WeightsOpt = None,
    epochs: EpochsOpt = None,
    config: ConfigOpt = None,
    mlflow: MlflowOpt = None,
) -> None:
    """Train on digits, forget a random 10%, compare every method with the retrain reference."""
    with user_errors():
        cfg = make_config(
            config,
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
) -> None:
    """Pretrain on the public split, train on D, save the model (safetensors + metadata)."""
    from unlearnkit.experiment import load_bundle, train_original
    from unlearnkit.store import save_trained
    from unlearnkit.training import accuracy

    with user_errors():
        cfg = make_config(
            config,
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
        typer.Option("--from", help="directory written by `unlearnkit train` (else train first)"),
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
) -> None:
    """Unlearn a forget set with one method and measure it against retraining."""
    from unlearnkit.methods import METHODS

    with user_errors():
        params = parse_params(param or [])
        METHODS.create(method, **params)  # bad hyper-parameters fail before any training
        if model_dir is not None:
            from unlearnkit.experiment import load_bundle
            from unlearnkit.store import check_fingerprint, load_trained

            trained, saved_cfg, meta = load_trained(model_dir)
            saved = saved_cfg.model_dump(mode="json")
            saved.pop("methods")
            saved["seeds"] = [trained.seed]
            cfg = make_config(
                saved,
                forget=forget,
                methods=method,
                method_params={method: params} if params else None,
            )
            bundle = load_bundle(cfg)
            check_fingerprint(meta, bundle, model_dir)
            run_and_write(
                cfg,
                out or Path(f"runs/unlearn-{method}"),
                trained,
                bundle,
                mlflow_experiment=mlflow,
            )
        else:
            cfg = make_config(
                config,
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
                method_params={method: params} if params else None,
            )
            run_and_write(cfg, out or Path(f"runs/unlearn-{method}"), mlflow_experiment=mlflow)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values parsed as YAML scalars (numbers, booleans, strings)."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UnlearnkitError(f"--param {pair!r} must look like KEY=VALUE")
        params[key.strip()] = yaml.safe_load(value)
    return params


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--from", help="directory written by `train`")],
    forget: ForgetOpt = "random:0.1",
) -> None:
    """Accuracy on retain / forget / test and MIA efficacy of a saved model."""
    from unlearnkit.data.forget import select_forget
    from unlearnkit.experiment import load_bundle
    from unlearnkit.metrics import accuracy, mia_efficacy
    from unlearnkit.store import check_fingerprint, load_trained

    with user_errors():
        trained, cfg, meta = load_trained(model_dir)
        bundle = load_bundle(cfg)
        check_fingerprint(meta, bundle, model_dir)
        ids = select_forget(bundle.train, forget or cfg.forget, trained.seed)
        retain, forget_split = bundle.train.drop_ids(ids), bundle.train.select_ids(ids)
        table = Table(title=f"{model_dir} - forget {forget}")
        for col in ("retain %", "forget %", "test %", "MIA efficacy %"):
            table.add_column(col, justify="right")
        table.add_row(
            *(
                f"{v:.1f}"
                for v in (
                    accuracy(trained.model, retain),
                    accuracy(trained.model, forget_split),
                    accuracy(trained.model, bundle.test),
                    mia_efficacy(trained.model, retain, forget_split, bundle.test),
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
    "unlearnkit.ntk.cli",
    "unlearnkit.memorization.cli",
    "unlearnkit.service.cli",
    "unlearnkit.exact.cli",
)


def mount_subcommands(target: typer.Typer) -> None:
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).mount(target)


def main() -> None:
    mount_subcommands(app)
    try:
        app()
    except UnlearnkitError as exc:  # a sub-app that forgot its own guard
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
