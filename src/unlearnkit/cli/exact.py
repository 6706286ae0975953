"""``unlearnkit s3t`` and ``unlearnkit sisa``: train once, delete instantly, watch capacity.

  unlearnkit s3t train --out runs/s3t --shards 5 --slices 3 --sequences 3
  unlearnkit s3t delete --from runs/s3t --ids 3,17,42   # receipts as JSON lines on stdout
  unlearnkit s3t status --from runs/s3t                 # live shards, capacity left, retrains
  unlearnkit s3t predict --from runs/s3t --split test   # accuracy (+ --save predictions)
  unlearnkit s3t retrain --from runs/s3t --pending      # retrain shards with switched-off blocks
  unlearnkit s3t capacity --shards 5 --slices 4 --sequences 4   # theory vs simulation

``sisa`` has the same commands (no sequences or prior; ``--aggregation vote``). Every command
validates all input before it changes anything; the state directory is written atomically, so
an interrupted train or delete leaves the previous state usable. Bad input: one line, exit 2.
``train``, ``delete``, ``retrain`` and ``predict`` take ``--threads``, ``--device`` and
``--precision``; on a GPU they turn on deterministic CUDA kernels (docs/devices.md says what
exactness holds there); shard-training worker processes (Ray) use one thread each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from unlearnkit.cli.common import (
    DeviceOpt,
    HeadOpt,
    IdsOpt,
    ImageSizeOpt,
    ModelDirOpt,
    ModelOptionOpt,
    PrecisionOpt,
    SkipBadOpt,
    ThreadsOpt,
    WeightsSkipHeadOpt,
    WorkersOpt,
    console,
    dataset_flags,
    model_option_flags,
    use_runtime,
    user_errors,
    warn_skipped,
)
from unlearnkit.errors import NotFoundError, UnlearnkitError
from unlearnkit.id_lists import parse_ids

OutOpt = Annotated[Path, typer.Option(help="directory for the ensemble state")]
DatasetOpt = Annotated[str, typer.Option(help="dataset name (see `unlearnkit datasets`)")]
DataDirOpt = Annotated[str | None, typer.Option(help="local folder with the data files")]
ModelOpt = Annotated[
    str,
    typer.Option(
        help="backbone: smallcnn | resnet18 | vit_tiny | timm:NAME | torchvision:NAME | "
        "module:package.module:factory (see `unlearnkit models`)"
    ),
]
ShardsOpt = Annotated[int, typer.Option("--shards", help="m: disjoint shards of D")]
_SHAPE = "default: the data set's preset (fashion_mnist, mnist: 10 shards, rank 8, the last 3)"
TrainShardsOpt = Annotated[
    int | None, typer.Option("--shards", help=f"m: disjoint shards of D ({_SHAPE}, else 5)")
]
SlicesOpt = Annotated[int, typer.Option("--slices", help="L: slices per shard (= blocks)")]
_PRESET = "default: the data set's preset (fashion_mnist, mnist), else"
EpochsOpt = Annotated[
    int | None, typer.Option(help=f"epochs of every training stage ({_PRESET} 5)")
]
LrOpt = Annotated[
    float | None, typer.Option(help=f"SGD learning rate of every stage ({_PRESET} 0.01)")
]
BatchOpt = Annotated[int | None, typer.Option(help=f"batch size ({_PRESET} 32)")]
# the stage recipe without a preset or a flag (the CLI's defaults before presets existed)
_STAGE_DEFAULTS: dict[str, Any] = {"epochs": 5, "lr": 0.01, "batch_size": 32}
RankOpt = Annotated[int | None, typer.Option(help=f"LoRA rank r ({_SHAPE}, else 16)")]
# the ensemble's shape without a preset or a flag (adapt None: every layer)
_SHAPE_DEFAULTS: dict[str, Any] = {"num_shards": 5, "lora_rank": 16, "adapt": None}
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        help="when to retrain: eager | dead_shard | all_dead | manual "
        "(default: dead_shard for S3T, eager for SISA)"
    ),
]
PretrainOpt = Annotated[
    bool,
    typer.Option(
        "--pretrain/--no-pretrain",
        help="train the frozen backbone on the data set's disjoint public split first",
    ),
]
PublicOpt = Annotated[float, typer.Option(help="share of the training pool kept public")]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="local backbone checkpoint instead of pretraining")
]
SeedOpt = Annotated[int, typer.Option(help="seed of the partition, blocks and backbone")]
ExecutorOpt = Annotated[str, typer.Option(help="where shards train: local | ray")]
RayOpt = Annotated[
    str | None, typer.Option(help="join this Ray cluster (default: start a local one)")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="replace an ensemble already in --out")
]


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UnlearnkitError(f"{flag} {text!r}: expected comma-separated numbers") from None


def guarded() -> Any:
    """The CLI's one error guard, with the exact engine's message for Ctrl-C."""
    return user_errors("interrupted; the previous state is intact")


def _echo(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


def _load(directory: Path, scheme: str) -> Any:
    """The directory's state as its one record says (snapshot + ledger), read-only."""
    # deferred: torch, the exact engine and the service's record, so --help stays fast
    from unlearnkit.exact.store import read_kind
    from unlearnkit.service.record import read_state

    kind = read_kind(directory)
    if kind != scheme:
        raise UnlearnkitError(f"{directory} holds a {kind!r} ensemble, not {scheme!r}")
    return read_state(directory)


def _policy(ens: Any) -> str:
    """The retrain policy the ensemble was trained with (the service serves it as manual)."""
    return str(ens.meta.get("retrain_policy", ens.config.retrain_policy))


def _with_preset(
    defaults: dict[str, Any], dataset: str, section: str, given: dict[str, Any]
) -> dict[str, Any]:
    """Field by field: each value given wins over the data set's preset ``section``, which wins
    over the built-in ``defaults``. None in ``given`` means "not given"."""
    from unlearnkit.recipe.presets import ensemble_preset  # deferred with the rest of _train's

    chosen = {k: v for k, v in given.items() if v is not None}
    return {**defaults, **ensemble_preset(dataset, section), **chosen}


def ensemble_shape(
    dataset: str, shards: int | None, rank: int | None, adapt: str | None, slices: int = 3
) -> dict[str, Any]:
    """m, LoRA rank and adapted layers (flag > data set's preset > 5 shards, rank 16, every
    layer). A preset's "last K layers" grows to the L slices asked for: S3T needs one disjoint
    layer group per slice, and a default must not refuse a --slices the user gave."""
    shape = _with_preset(
        _SHAPE_DEFAULTS, dataset, "shape", {"num_shards": shards, "lora_rank": rank}
    )
    if adapt is not None:
        return {**shape, **_adapt(adapt)}
    if isinstance(shape["adapt"], int):
        shape["adapt"] = max(shape["adapt"], slices)
    return shape


# -- commands shared by both schemes ------------------------------------------------------------
def _train(scheme: str, out: Path, overwrite: bool, opts: dict[str, Any], extra: dict) -> None:
    # deferred: torch, the exact engine and Ray, so --help stays fast
    from unlearnkit.exact import ENSEMBLES, EnsembleRecipe, build_ensemble, check_ensemble
    from unlearnkit.exact.recipe import load_data
    from unlearnkit.exact.store import POINTER
    from unlearnkit.runtime import EXECUTORS, LocalExecutor, create_executor

    cls = ENSEMBLES.get(scheme)
    if (out / POINTER).exists() and not overwrite:
        raise UnlearnkitError(f"{out} already holds an ensemble; pass --overwrite to replace it")
    if (out / "service").exists():  # its ledger records deletions from the model in it
        raise UnlearnkitError(
            f"{out} holds a deletion record ({out / 'service'}) of the model in it; train into "
            "a new directory"
        )
    EXECUTORS.get(opts["executor"])
    recipe = EnsembleRecipe(
        dataset=opts["dataset"],
        data_dir=opts["data_dir"],
        pretrain=opts["pretrain"],
        public_fraction=opts["public_fraction"],
        weights=None if opts["weights"] is None else str(opts["weights"]),
        weights_skip_head=bool(opts["weights_skip_head"]),
        dataset_options=dataset_flags(
            image_size=opts["image_size"], skip_bad_images=opts["skip_bad_images"]
        ),
    )
    given = {k: opts[k] for k in ("epochs", "lr", "batch_size")}
    train = _with_preset(_STAGE_DEFAULTS, opts["dataset"], "train", given)
    shape = ensemble_shape(
        opts["dataset"], opts["shards"], opts["rank"], opts["adapt"], opts["slices"]
    )
    config = cls.config_type(
        model=opts["model"],
        model_options=model_option_flags(opts["model_option"], opts["head"]) or {},
        num_slices=opts["slices"],
        train=train,
        seed=opts["seed"],
        **({"retrain_policy": opts["policy"]} if opts["policy"] else {}),
        **shape,
        **extra,
    )
    bundle = load_data(recipe)
    warn_skipped(bundle.skipped)
    check_ensemble(config, bundle)  # every bad shape or model fails here, before any work
    executor = create_executor(
        opts["executor"], **({"address": opts["ray_address"]} if opts["executor"] == "ray" else {})
    )
    start = time.perf_counter()
    console.print(
        f"training {scheme}: {config.num_shards} shards x {config.num_slices} slices on "
        f"{len(bundle.train)} samples ({opts['executor']})"
    )
    with executor:
        ens = build_ensemble(recipe, config, executor, bundle=bundle, log=console.print)
    ens.executor = LocalExecutor()
    ens.save(out)
    acc = ens.accuracy(bundle.test)
    console.print(
        f"trained in {time.perf_counter() - start:.1f} s; test accuracy {acc:.2f}%; wrote {out}"
    )
    _echo({"out": str(out), "test_accuracy": round(acc, 2), "train_seconds": ens.train_seconds})


def _delete(directory: Path, scheme: str, ids: str) -> None:
    # deferred: the exact engine and the service's record, so --help stays fast
    from unlearnkit.exact.retrain import shards_to_retrain
    from unlearnkit.service.record import Writer

    wanted = list(dict.fromkeys(parse_ids(ids)))
    state = _load(directory, scheme)
    for i in wanted:  # every id is checked before anything is written
        if not state.model.known(i):
            raise NotFoundError(f"sample id {i} is not in the training set of this ensemble")
    fresh = _report_deleted(wanted, state)
    if not fresh:
        return
    start = time.perf_counter()
    with Writer(directory) as writer:  # one writer: refused while a service runs here
        fresh = _report_deleted(fresh, writer.state())  # deleted meanwhile by someone else
        if not fresh:
            return
        ens = writer.model.ensemble
        event = writer.record("deletion", {"sample_ids": sorted(fresh)})
        if event.status != "applied" or event.receipt is None:
            raise UnlearnkitError(f"deletion failed: {event.reason}")
        receipts = event.receipt["change"]["samples"]
        touched = sorted({int(r["shard"]) for r in receipts})
        retrained = shards_to_retrain(_policy(ens), ens.blocks, touched)  # type: ignore[arg-type]
        for shard in retrained:
            writer.record("retrain", {"shard": shard})
    seconds = time.perf_counter() - start
    for r in receipts:
        served = ens.blocks.served(int(r["shard"]))
        out = {**r, "version": ens.version, "retrained_shards": retrained, "served": served}
        sys.stdout.write(json.dumps({**out, "request_id": event.request_id}) + "\n")
    console.print(
        f"deleted {len(fresh)} id(s) in {1000 * seconds:.1f} ms (request {event.request_id}); "
        f"version {ens.version}; live shards {len(ens.serving_plan())}/{ens.config.num_shards}"
    )


def _report_deleted(wanted: list[int], state: Any) -> list[int]:
    """Say which ids the record already deletes (one line); return the others."""
    deleting = state.deleting()
    done = [i for i in wanted if i in deleting]
    if done:
        for i in done:
            e = deleting[i]
            line = {"sample_id": i, "already_deleted": True, "request_id": e.request_id}
            sys.stdout.write(json.dumps({**line, "client": e.client}) + "\n")
        requests = sorted({f"{deleting[i].request_id} by {deleting[i].client!r}" for i in done})
        console.print(
            f"already deleted, nothing changed: id(s) {','.join(map(str, done))} "
            f"(request {'; '.join(requests)})",
            soft_wrap=True,
        )
    return [i for i in wanted if i not in deleting]


def _status(directory: Path, scheme: str) -> None:
    state = _load(directory, scheme)
    ens = state.model.ensemble
    out = ens.status()
    out["retrain_policy"] = _policy(ens)
    out["deleted_samples"] = len(ens.partition.deleted)
    out["ledger"] = {"events": len(state.events), "applied_seq": state.applied_seq}
    _echo(out)


def _predict(
    directory: Path, scheme: str, split: str, save: Path | None, packed: bool = True
) -> None:
    # deferred: torch and the exact engine, so --help stays fast
    from unlearnkit.exact.recipe import ensemble_data
    from unlearnkit.models.checkpoint import atomic_write_text

    if split not in ("test", "train"):
        raise UnlearnkitError(f"--split {split!r}: choose test or train")
    ens = _load(directory, scheme).model.ensemble
    bundle = ensemble_data(ens.meta)
    data = bundle.test if split == "test" else bundle.train.drop_ids(ens.partition.deleted)
    pred = ens.predict_logits(data, packed=packed).argmax(dim=1)
    acc = 100.0 * float((pred == data.y).float().mean())
    if save is not None:
        rows = ["id,prediction,label"]
        rows += [f"{i},{p},{y}" for i, p, y in zip(data.ids.tolist(), pred.tolist(),
                                                   data.y.tolist(), strict=True)]  # fmt: skip
        atomic_write_text(save, "\n".join(rows) + "\n")
        console.print(f"wrote {save}")
    _echo({"split": split, "samples": len(data), "accuracy": round(acc, 2),
           "version": ens.version, "live_shards": sorted(ens.serving_plan())})  # fmt: skip


def _retrain(directory: Path, scheme: str, shard: int | None, pending: bool) -> None:
    # deferred: the service's record, so --help stays fast
    from unlearnkit.service.record import Writer

    if (shard is None) == (not pending):
        raise UnlearnkitError("give exactly one of --shard N or --pending")
    m = _load(directory, scheme).model.ensemble.config.num_shards
    if shard is not None and not 0 <= shard < m:
        raise NotFoundError(f"shard {shard} does not exist (0..{m - 1})")
    start = time.perf_counter()
    with Writer(directory) as writer:
        ens = writer.model.ensemble
        todo = [shard] if shard is not None else ens.status(simulate=False)["retrains_pending"]
        for s in todo:
            event = writer.record("retrain", {"shard": int(s)})
            if event.status != "applied":
                raise UnlearnkitError(f"retrain of shard {s} failed: {event.reason}")
    console.print(f"retrained shard(s) {todo} in {time.perf_counter() - start:.1f} s")
    _echo({"retrained": todo, "version": ens.version})


def _capacity(shards: int, slices: int, sequences: int, prior: str | None, trials: int) -> None:
    # deferred: numpy/scipy and the exact engine, so --help stays fast
    from unlearnkit.exact.capacity import s3t_capacity, simulate_capacity, sisa_capacity
    from unlearnkit.exact.sequences import select_sequences

    p = parse_floats(prior, "--prior") if prior else None
    orders = select_sequences(slices, sequences, p)
    sim = simulate_capacity(shards, slices, orders, prior=p, trials=trials)
    sisa = simulate_capacity(shards, slices, 1, prior=p, trials=trials)
    _echo({
        "m": shards, "L": slices, "B": sequences, "prior": p,
        "sequences": [list(o) for o in orders],
        "s3t_theory": s3t_capacity(shards, slices, sequences) if p is None else None,
        "s3t_simulated": round(sim.mean, 2), "s3t_stderr": round(sim.stderr, 2),
        "sisa_theory": sisa_capacity(shards, slices) if p is None else None,
        "sisa_simulated": round(sisa.mean, 2),
        "ratio_simulated": round(sim.mean / sisa.mean, 3),
    })  # fmt: skip


# -- the two Typer apps -----------------------------------------------------------------------
def _common(app: typer.Typer, scheme: str) -> None:
    """delete / status / predict / retrain, identical for S3T and SISA."""

    @app.command()
    def delete(
        directory: ModelDirOpt,
        ids: IdsOpt,
        threads: ThreadsOpt = None,
        device: DeviceOpt = None,
        precision: PrecisionOpt = None,
    ) -> None:
        """Delete samples: switch off every block that saw them (receipts on stdout)."""
        with guarded():
            # an eager / dead-shard policy may retrain right away
            use_runtime(threads, device, precision, deterministic=True)
            _delete(directory, scheme, ids)

    @app.command()
    def status(directory: ModelDirOpt) -> None:
        """Live and dead shards, served prefixes, capacity left (theory and simulation)."""
        with guarded():
            _status(directory, scheme)

    @app.command()
    def predict(
        directory: ModelDirOpt,
        split: Annotated[str, typer.Option(help="test | train (live samples)")] = "test",
        save: Annotated[Path | None, typer.Option(help="write id,prediction,label CSV")] = None,
        loop: Annotated[
            bool,
            typer.Option(
                "--loop", help="the per-shard loop (the reference) instead of the packed pass"
            ),
        ] = False,
        threads: ThreadsOpt = None,
        device: DeviceOpt = None,
        precision: PrecisionOpt = None,
        workers: WorkersOpt = 0,
    ) -> None:
        """Accuracy of the served ensemble on the data set it was trained for."""
        with guarded():
            use_runtime(threads, device, precision, deterministic=True, workers=workers)
            _predict(directory, scheme, split, save, packed=not loop)

    @app.command()
    def retrain(
        directory: ModelDirOpt,
        shard: Annotated[int | None, typer.Option(help="retrain this shard")] = None,
        pending: Annotated[
            bool, typer.Option("--pending", help="every shard with switched-off blocks")
        ] = False,
        threads: ThreadsOpt = None,
        device: DeviceOpt = None,
        precision: PrecisionOpt = None,
        workers: WorkersOpt = 0,
    ) -> None:
        """Retrain switched-off blocks on the remaining data (exact: as if never seen)."""
        with guarded():
            use_runtime(threads, device, precision, deterministic=True, workers=workers)
            _retrain(directory, scheme, shard, pending)


s3t_app = typer.Typer(
    help="S3T exact unlearning: sharded, sliced, sequence-aware LoRA blocks; deleting switches "
    "blocks off.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sisa_app = typer.Typer(
    help="SISA exact unlearning (baseline): one PEFT model per shard, checkpoint per slice; "
    "deleting retrains from the last clean checkpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


AdaptOpt = Annotated[
    str | None,
    typer.Option(
        help="layers the blocks adapt: K (the last K, nearest the head), a module-name "
        "pattern (layer4.*) or all (default: the data set's preset, fashion_mnist / mnist 3, "
        "else all). The frozen layers below run once per prediction"
    ),
]


def _adapt(value: str | None) -> dict[str, Any]:
    """``{}`` when not given (the preset decides), ``adapt: None`` for ``all``."""
    if value is None:
        return {}
    if value.strip().lower() == "all":
        return {"adapt": None}
    return {"adapt": int(value) if value.strip().lstrip("-").isdigit() else value}


@s3t_app.command("train")
def s3t_train(
    out: OutOpt = Path("runs/s3t"),
    dataset: DatasetOpt = "digits",
    data_dir: DataDirOpt = None,
    model: ModelOpt = "smallcnn",
    shards: TrainShardsOpt = None,
    slices: SlicesOpt = 3,
    sequences: Annotated[
        int | None, typer.Option("--sequences", help="B: orders per shard (default min(3, L))")
    ] = None,
    prior: Annotated[
        str | None,
        typer.Option(help="per-slice deletion prior, e.g. 0.1,0.2,0.7 (matching sequences)"),
    ] = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    rank: RankOpt = None,
    adapt: AdaptOpt = None,
    retrain_policy: PolicyOpt = None,
    pretrain: PretrainOpt = True,
    public_fraction: PublicOpt = 0.3,
    weights: WeightsOpt = None,
    weights_skip_head: WeightsSkipHeadOpt = None,
    model_option: ModelOptionOpt = None,
    head: HeadOpt = None,
    seed: SeedOpt = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    image_size: ImageSizeOpt = None,
    skip_bad_images: SkipBadOpt = None,
    workers: WorkersOpt = 0,
) -> None:
    """Shard, slice and train B sequences of L LoRA blocks per shard."""
    opts = dict(locals())
    with guarded():
        use_runtime(threads, device, precision, deterministic=True, workers=workers)
        extra: dict[str, Any] = {"num_sequences": sequences}
        if prior is not None:
            extra["deletion_prior"] = parse_floats(prior, "--prior")
        _train("s3t", out, overwrite, _rename(opts), extra)


@sisa_app.command("train")
def sisa_train(
    out: OutOpt = Path("runs/sisa"),
    dataset: DatasetOpt = "digits",
    data_dir: DataDirOpt = None,
    model: ModelOpt = "smallcnn",
    shards: TrainShardsOpt = None,
    slices: SlicesOpt = 3,
    aggregation: Annotated[str, typer.Option(help="mean_logits | vote")] = "mean_logits",
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    rank: RankOpt = None,
    adapt: AdaptOpt = None,
    retrain_policy: PolicyOpt = None,
    pretrain: PretrainOpt = True,
    public_fraction: PublicOpt = 0.3,
    weights: WeightsOpt = None,
    weights_skip_head: WeightsSkipHeadOpt = None,
    model_option: ModelOptionOpt = None,
    head: HeadOpt = None,
    seed: SeedOpt = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    image_size: ImageSizeOpt = None,
    skip_bad_images: SkipBadOpt = None,
    workers: WorkersOpt = 0,
) -> None:
    """Shard, slice and train one LoRA model per shard with a checkpoint after every slice."""
    opts = dict(locals())
    with guarded():
        use_runtime(threads, device, precision, deterministic=True, workers=workers)
        extra = {"aggregation": aggregation}
        _train("sisa", out, overwrite, _rename(opts), extra)


def _rename(opts: dict[str, Any]) -> dict[str, Any]:
    return {**opts, "policy": opts["retrain_policy"]}


@s3t_app.command("capacity")
def s3t_capacity_cmd(
    shards: ShardsOpt = 5,
    slices: SlicesOpt = 4,
    sequences: Annotated[int, typer.Option("--sequences", help="B")] = 4,
    prior: Annotated[str | None, typer.Option(help="per-slice deletion prior")] = None,
    trials: Annotated[int, typer.Option(help="Monte Carlo deletion streams")] = 2000,
) -> None:
    """Expected deletions before every shard is dead: S3T vs SISA, closed form and simulated."""
    with guarded():
        _capacity(shards, slices, sequences, prior, trials)


_common(s3t_app, "s3t")
_common(sisa_app, "sisa")


def mount(main_app: typer.Typer) -> None:
    """Add ``s3t`` and ``sisa`` to the main app."""
    main_app.add_typer(s3t_app, name="s3t")
    main_app.add_typer(sisa_app, name="sisa")
