"""What every sub-command shares: the console, the one error guard, option types, configs.

User mistakes (``UnlearnkitError``, a pydantic validation error) end with one line on stderr and
exit code 2; an internal failure (``InternalError``: training diverged, a ledger was lost) with
one line and exit code 1; Ctrl-C with exit code 130. Nothing else in the CLI catches errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from unlearnkit.errors import InternalError, UnlearnkitError, validation_message

console = Console(stderr=True)

# -- option types shared by several commands ------------------------------------------------------
DatasetOpt = Annotated[str | None, typer.Option(help="dataset name (see `unlearnkit datasets`)")]
DataDirOpt = Annotated[str | None, typer.Option(help="local folder with the data files")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="smallcnn | resnet18 | vit_tiny | timm:NAME | torchvision:NAME | "
        "module:package.module:factory (see `unlearnkit models`)"
    ),
]
ModelOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option", help="the model's argument KEY=VALUE, a YAML scalar (repeatable)"
    ),
]
HeadOpt = Annotated[
    str | None,
    typer.Option(help="the classifier head's module path, when it is not found by convention"),
]
WeightsSkipHeadOpt = Annotated[
    bool | None,
    typer.Option(
        "--weights-skip-head",
        help="load --weights without its head (a backbone for a new label set)",
    ),
]
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
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        help="local checkpoint to start from (.safetensors, .pt, .pth; DDP / torch.compile / "
        "training-script containers are unwrapped)"
    ),
]
# Every command that reads a model directory names it the same way.
ModelDirOpt = Annotated[
    Path,
    typer.Option("--from", help="model directory (written by `unlearnkit train` or `s3t train`)"),
]
SubsetOpt = Annotated[
    int | None,
    typer.Option(
        help="use a seeded, class-stratified sample of N training samples; a preset's epochs "
        "grow to keep its optimisation steps (epoch_scaling: null keeps them as they are)",
        min=2,
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="model input size in pixels for imagefolder (the shorter side resized to it, the "
        "centre square cropped) and synthetic; saved with the model (default 32); the "
        "fixed-size sets (digits, MNIST-format, CIFAR) refuse it",
        min=1,
    ),
]
SkipBadOpt = Annotated[
    bool | None,
    typer.Option(
        "--skip-bad-images/--no-skip-bad-images",
        help="image folders: leave unreadable or truncated files out (a warning gives the count) "
        "instead of stopping at the first one",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for this command (default: the cores this process may use, capped by "
        "UNLEARNKIT_MAX_THREADS); worker processes use one each",
        min=1,
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        help="DataLoader worker processes that decode and transform batches for training and "
        "predictions (one thread each; 0: the main process does it)",
        min=0,
    ),
]
# the same DataLoader workers on commands whose --workers already counts pool processes
# (audit's shadow-model pool, ntk precompute's shards)
LoaderWorkersOpt = Annotated[
    int,
    typer.Option(
        "--loader-workers",
        help="DataLoader worker processes that decode batches in this process (one thread "
        "each; 0: this process does it); pool processes always decode their own",
        min=0,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(help="auto | cpu | cuda | cuda:N | mps (default auto: CUDA when present)"),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(help="fp32 | bf16 | fp16: autocast for training and inference (default fp32)"),
]
IdsOpt = Annotated[str, typer.Option(help="comma-separated sample ids, or @file (one per line)")]
VerifyContentOpt = Annotated[
    bool,
    typer.Option(
        "--verify-content",
        help="image folders: read and hash every file against the model's manifest (the deep "
        "check; by default a file whose size and mtime are as recorded is not read)",
    ),
]


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


@contextmanager
def user_errors(interrupted: str = "interrupted; nothing partial was written") -> Iterator[None]:
    """The one CLI error guard: a user mistake is one line and exit code 2, never a traceback."""
    try:
        yield
    except ValidationError as exc:
        fail(validation_message(exc))
    except UnlearnkitError as exc:
        fail(str(exc))
    except InternalError as exc:
        fail(f"internal failure: {exc}", code=1)
    except KeyboardInterrupt:
        console.print(interrupted)
        raise typer.Exit(code=130) from None


def warn_skipped(skipped: tuple[str, ...] | list[str]) -> None:
    """The count of unreadable images ``--skip-bad-images`` left out (and the first one)."""
    if skipped:
        console.print(
            f"[yellow]warning:[/yellow] skipped {len(skipped)} unreadable image(s), "
            f"first {skipped[0]}",
            highlight=False,
            soft_wrap=True,
        )


def use_threads(threads: int | None) -> int:
    """Apply ``--threads`` (``None``: the default) once, before any heavy work."""
    from unlearnkit.runtime.threads import apply_threads  # deferred: torch, so --help stays fast

    return apply_threads(threads)


def use_runtime(
    threads: int | None,
    device: str | None = None,
    precision: str | None = None,
    deterministic: bool = False,
    workers: int = 0,
) -> Any:
    """Create this command's one runtime (``--device``, ``--precision``, ``--threads``) and
    make it current, before any heavy work; a device that is not here is one line, exit 2.
    ``deterministic`` (S3T/SISA) turns on deterministic CUDA kernels on a GPU; ``workers``
    (``--workers``) DataLoader processes decode batches."""
    from unlearnkit.runtime.device import Runtime  # deferred: torch, so --help stays fast

    return Runtime.create(device, precision, threads, deterministic, workers).activate()


def refuse_given(command: str, reason: str, **flags: Any) -> None:
    """Refuse flags a command would otherwise accept and ignore (``None`` = not given)."""
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None]
    if given:
        raise UnlearnkitError(f"{command}: {', '.join(given)} cannot be used here: {reason}")


def make_config(config: Path | dict[str, Any] | None, **overrides: Any) -> Any:
    """A validated experiment config from a YAML file (or a dict) with the given flags on top."""
    from unlearnkit.config import build_config, load_config_file  # deferred: heavy (torch, methods)

    base = (
        dict(config) if isinstance(config, dict) else (load_config_file(config) if config else {})
    )
    seeds = overrides.pop("seeds", None)
    methods = overrides.pop("methods", None)
    epochs = overrides.pop("epochs", None)
    options = model_option_flags(
        overrides.pop("model_option", None), overrides.pop("head", None), base.get("model_options")
    )
    if options is not None:
        overrides["model_options"] = options
    data_flags = dataset_flags(
        subset=overrides.pop("subset", None),
        image_size=overrides.pop("image_size", None),
        skip_bad_images=overrides.pop("skip_bad_images", None),
    )
    if data_flags:
        overrides["dataset_options"] = {**base.get("dataset_options", {}), **data_flags}
    if seeds is not None:
        overrides["seeds"] = list(range(seeds))
    if methods is not None:
        overrides["methods"] = [m.strip() for m in methods.split(",") if m.strip()]
    if epochs is not None:
        overrides["train"] = {**base.get("train", {}), "epochs": epochs}
    return build_config(base, **overrides)


def model_option_flags(
    model_option: list[str] | None, head: str | None, base: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """``--model-option KEY=VALUE`` and ``--head`` on top of ``base`` (a config's
    ``model_options``); None when neither flag is given, so the base stays as it is."""
    if not model_option and head is None:
        return None
    options = {**(base or {}), **parse_params(model_option or [], "model-option")}
    return {**options, **({"head": head} if head is not None else {})}


def dataset_flags(**flags: Any) -> dict[str, Any]:
    """The data set options given as flags (``--subset``, ``--image-size``, ...); a data set
    that has no such option refuses it by name when it is loaded, before any training."""
    return {name: value for name, value in flags.items() if value is not None}


def parse_params(pairs: list[str], flag: str = "param") -> dict[str, Any]:
    """KEY=VALUE pairs; values parsed as YAML scalars (numbers, booleans, strings)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UnlearnkitError(f"--{flag} {pair!r} must look like KEY=VALUE")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UnlearnkitError(f"--{flag} {pair!r}: the value is not a YAML scalar") from None
    return params


class ConsoleProgress:
    """The CLI's one progress display, and the receiver of the library's ``report`` calls.

    In a terminal: one rich bar per kind of work (``train``, ``ntk precompute ...``) under the
    command's own steps. Without one (a log file, CI): a line per step with the time so far, and
    a line per kind of work at most every ``every_s`` seconds, so a long run is never silent and
    a log is not flooded."""

    def __init__(self, bar: Progress | None, every_s: float = 10.0) -> None:
        self.bar, self.every_s = bar, every_s
        self.tasks: dict[str, Any] = {}
        self.printed: dict[str, float] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.bar is not None:
            task = self.tasks.get(what)
            if task is None:
                task = self.tasks[what] = self.bar.add_task(what, total=total)
            self.bar.update(task, completed=done, total=total)
            return
        now = time.monotonic()
        if now - self.printed.get(what, -self.every_s) >= self.every_s:
            self.printed[what] = now
            console.print(f"      {what}: {done}/{total}", highlight=False)


@contextmanager
def console_progress() -> Iterator[ConsoleProgress]:
    """Show the progress the library reports while the block runs (rich bars or log lines)."""
    from unlearnkit.runtime.progress import reporting  # deferred: the runtime package loads torch

    bar = None
    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        bar.start()
    receiver = ConsoleProgress(bar)
    try:
        with reporting(receiver):
            yield receiver
    finally:
        if bar is not None:
            bar.stop()


@contextmanager
def progress_steps(total: int) -> Iterator[Callable[[str], None]]:
    """The command's steps, advanced by a ``step(message)`` callback, with the library's own
    progress below them (``console_progress``): a rich bar in a terminal; without one a line
    per step with the time so far."""
    with console_progress() as shown:
        if shown.bar is None:
            start = time.perf_counter()
            done = [0]

            def line(message: str) -> None:
                done[0] += 1
                elapsed = time.perf_counter() - start
                console.print(f"[{done[0]}/{total}] {elapsed:7.1f} s  {message}", highlight=False)

            yield line
            return
        bar = shown.bar
        task = bar.add_task("starting", total=total)

        def step(message: str) -> None:
            bar.update(task, description=message, advance=1)

        yield step
        bar.update(task, description="done", completed=total)
