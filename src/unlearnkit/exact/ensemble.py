"""Sharded exact-unlearning ensembles: train once, delete by switching blocks off, retrain by
policy, serve the mean logits of live shards. S3T and SISA differ only in their stack scheme,
their sequences and their defaults (see ``s3t.py`` and ``sisa.py``).

This class holds an ensemble's state and orders the steps; each step has its own module:
``jobs`` (what a worker trains), ``blocks`` (which blocks are alive, what each shard serves),
``serving`` (aggregation over shards), ``retrain`` (policy and tickets), ``capacity`` (deletions
left), ``store`` (the state on disk).

Exactness rests on three facts: (1) the ownership map is fixed at creation and deletions only
remove members; (2) a block's training depends only on the backbone, the blocks above it in its
sequence, its slices and (seed, shard, sequence, stage); (3) every block that saw a deleted
sample is off until it is retrained on the remaining data. So after ``delete(x)`` the served
model equals, bit for bit on CPU, the same procedure run on D without x and served with the same
prefixes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.exact.backbone import random_backbone
from unlearnkit.exact.blocks import BlockTable, Plan
from unlearnkit.exact.capacity import remaining_capacity_theory, simulate_capacity
from unlearnkit.exact.config import ShardedConfig
from unlearnkit.exact.jobs import ShardJob, run_shard_job
from unlearnkit.exact.packed import PackedView, Packer
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.retrain import RetrainTicket, shards_to_retrain
from unlearnkit.exact.serving import ensemble_logits
from unlearnkit.exact.stack import LoRAStack, Scheme, StackSpec, block_name
from unlearnkit.exact.store import SavedEnsemble, read_ensemble, read_kind, save_ensemble
from unlearnkit.registry import Registry
from unlearnkit.runtime import Executor, LocalExecutor
from unlearnkit.training import Inputs, input_batches

__all__ = ["ENSEMBLES", "Plan", "RetrainTicket", "ShardedEnsemble", "load_ensemble"]

ENSEMBLES: Registry[ShardedEnsemble] = Registry("ensemble scheme")


def load_ensemble(directory: str | Path) -> ShardedEnsemble:
    """Load whichever scheme (``s3t`` or ``sisa``) the directory holds."""
    return ENSEMBLES.get(read_kind(directory)).load(directory)


class ShardedEnsemble:
    """Common engine; use :class:`S3TEnsemble` or :class:`SISAEnsemble`."""

    scheme: ClassVar[Scheme]
    config_type: ClassVar[type[ShardedConfig]]

    def __init__(
        self,
        config: ShardedConfig,
        spec: StackSpec,
        backbone_state: dict[str, torch.Tensor],
        partition: Partition,
        sequences: list[tuple[int, ...]],
        data: ArraySplit,
    ) -> None:
        """Internal: use ``train`` or ``load``."""
        self.config = config
        self.spec = spec
        self.backbone_state = backbone_state
        self.partition = partition
        self.sequences = sequences
        self.data = data
        self._row_of = {int(i): r for r, i in enumerate(data.ids.tolist())}
        self.blocks = BlockTable(config.num_shards, sequences)
        self.version = 0
        self.receipts: dict[int, dict[str, Any]] = {}
        self.retrains_done = 0
        self.retrain_seconds = 0.0
        self.train_seconds = 0.0
        self.executor: Executor = LocalExecutor()
        self.worker_threads = 1  # threads of each worker process that trains a shard
        self.meta: dict[str, Any] = {}  # where the data came from (dataset, fingerprint, ...)
        m, b, L = config.num_shards, len(sequences), config.num_slices
        self.stack = LoRAStack(spec, backbone_state, self.scheme, L, range(m), b)
        self.packer = Packer(self.stack, spec, backbone_state)  # builds packed views (serving)

    @property
    def alive(self) -> np.ndarray:
        """(m, B, L): which blocks are trained on live data only (see :class:`BlockTable`)."""
        return self.blocks.alive

    @alive.setter
    def alive(self, value: np.ndarray) -> None:
        self.blocks = BlockTable(self.config.num_shards, self.sequences, value)

    # -- what a scheme decides -------------------------------------------------------------------
    @classmethod
    def _sequences(cls, config: ShardedConfig) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def capacity_theory(self) -> float:
        raise NotImplementedError

    def _prior(self) -> list[float] | None:
        return None

    def _aggregation(self) -> str:
        return "mean_logits"

    # -- training --------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        data: ArraySplit,
        config: ShardedConfig,
        executor: Executor | None = None,
        *,
        num_classes: int | None = None,
        backbone_state: dict[str, torch.Tensor] | None = None,
        partition: Partition | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Self:
        """Shard, slice and train every block of every shard (shards in parallel via
        ``executor``). ``partition`` reuses an existing ownership map (minus deletions)."""
        if not isinstance(config, cls.config_type):
            raise UnlearnkitError(
                f"{cls.__name__} needs a {cls.config_type.__name__}, got {type(config).__name__}"
            )
        if len(data) == 0:
            raise UnlearnkitError("cannot train on an empty data set")
        spec = StackSpec(
            config.model,
            num_classes or int(data.y.max()) + 1,
            int(data.samples.sample_shape[0]),
            int(data.samples.sample_shape[-1]),
            dict(config.model_options),
            config.lora_rank,
            config.lora_alpha,
            tuple(config.lora_targets),
            tuple(config.lora_layers),
            config.adapt,
        )
        if partition is None:
            partition = Partition.create(
                data.ids, config.num_shards, config.num_slices, config.seed
            )
        elif (partition.num_shards, partition.num_slices) != (config.num_shards, config.num_slices):
            raise UnlearnkitError("partition shape does not match num_shards/num_slices")
        unknown = set(data.ids.tolist()) - set(partition.owner)
        if unknown:
            raise UnlearnkitError(f"sample id {min(unknown)} is not in the partition")
        live = sorted(set(data.ids.tolist()) - partition.deleted)
        data = data.select_ids(live) if len(live) != len(data) else data
        # a view of the data set, never a float copy of it: the pixels stay in their store
        # (uint8 in memory, or files) and a shard job pickles its own rows only
        partition = partition.without(())  # a private copy
        if backbone_state is None:
            backbone_state = random_backbone(spec, config.seed)
        self = cls(config, spec, backbone_state, partition, cls._sequences(config), data)
        self.executor = executor or LocalExecutor()
        self.meta = dict(meta or {})
        start = time.perf_counter()
        stages = [(b, k) for b in range(len(self.sequences)) for k in range(config.num_slices)]
        jobs = [self._job(s, stages) for s in range(config.num_shards)]
        for weights in self.executor.map(run_shard_job, jobs):
            self.stack.load_blocks(weights)
        self.train_seconds = time.perf_counter() - start
        return self

    def _shard_data(self, shard: int) -> ArraySplit:
        rows = [self._row_of[i] for i in self.partition.members(shard)]
        return self.data.subset(torch.tensor(rows, dtype=torch.long))

    def _job(self, shard: int, stages: list[tuple[int, int]]) -> ShardJob:
        return ShardJob(
            scheme=self.scheme,
            spec=self.spec,
            backbone_state=self.backbone_state,
            num_stages=self.config.num_slices,
            shard=shard,
            sequences=self.sequences,
            stages=stages,
            weights=self.stack.block_state(self.blocks.shard_names(shard)),
            data=self._shard_data(shard),
            slice_of={i: self.partition.owner[i][1] for i in self.partition.members(shard)},
            train=self.config.train,
            seed=self.config.seed,
            head_init=self.config.head_init,
            worker_threads=self.worker_threads,
        )

    # -- serving ---------------------------------------------------------------------------------
    def prefix_lengths(self) -> np.ndarray:
        """(m, B) surviving prefix length of every sequence."""
        return self.blocks.prefix_lengths()

    def serving_plan(self) -> Plan:
        """Each live shard serves its sequence with the longest surviving prefix (lowest index
        on ties)."""
        return self.blocks.serving_plan()

    def dead_shards(self) -> list[int]:
        return self.blocks.dead_shards()

    def packed_view(self, plan: Plan | None = None) -> PackedView:
        """The served version as one immutable packed computation (see ``packed.py``)."""
        plan = self.serving_plan() if plan is None else plan
        return self.packer.view(plan, self._aggregation())

    def predict_logits(
        self,
        x: Inputs,
        plan: Plan | None = None,
        batch_size: int = 512,
        packed: bool = True,
    ) -> torch.Tensor:
        """Mean logits over live shards, each with its served prefix (or ``plan``).
        ``packed``: the shared trunk once and every shard in one pass (the default); False:
        the per-shard loop, the reference the packed pass is tested against. ``x``: inputs or
        a split, read through the shared batched path (``--workers``) in batches that are whole
        multiples of the passes' chunks, so a split's logits are those of its inputs' tensor."""
        plan = self.serving_plan() if plan is None else plan
        if isinstance(x, ArraySplit) and len(x) == 0:
            x = x.samples.load(torch.zeros(0, dtype=torch.long))  # nothing to stream
        if packed:
            view = self.packed_view(plan)
            rows = view.chunk_rows(batch_size)
            chunks = input_batches(x, rows * max(1, batch_size // rows))
            return torch.cat([view.logits(chunk, batch_size) for chunk in chunks])
        aggregation = self._aggregation()
        return torch.cat(
            [
                ensemble_logits(self.stack, plan, chunk, aggregation, batch_size)
                for chunk in input_batches(x, batch_size)
            ]
        )

    def predict(self, x: Inputs) -> torch.Tensor:
        return self.predict_logits(x).argmax(dim=1)

    def accuracy(self, split: ArraySplit) -> float:
        return 100.0 * float((self.predict(split) == split.y).float().mean())

    # -- deletion --------------------------------------------------------------------------------
    def delete(self, sample_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Delete samples; one receipt per id. Already-deleted ids return their first receipt
        and change nothing; an unknown id fails the whole call before anything changes."""
        ids = [int(i) for i in sample_ids]
        for i in ids:
            if i not in self.partition.owner:
                raise NotFoundError(f"sample id {i} is not in the training set of this ensemble")
        for i in dict.fromkeys(ids):
            if i in self.partition.deleted and i not in self.receipts:  # absent at training
                shard, slc = self.partition.owner[i]
                self.receipts[i] = {
                    "sample_id": i,
                    "shard": shard,
                    "slice": slc,
                    "switched_off": [],
                    "version": self.version,
                    "retrained_shards": [],
                    "served": self.blocks.served(shard),
                    "note": "not in the training data of this ensemble",
                }
        fresh = [i for i in dict.fromkeys(ids) if i not in self.receipts]
        if fresh:
            self.version += 1
            for i in fresh:
                self.receipts[i] = self._deactivate(i)
            touched = sorted({self.receipts[i]["shard"] for i in fresh})
            retrained = shards_to_retrain(self.config.retrain_policy, self.blocks, touched)
            for shard in retrained:
                self.commit_retrain(self.prepare_retrain(shard), bump_version=False)
            for i in fresh:
                r = self.receipts[i]
                r["version"] = self.version
                r["retrained_shards"] = retrained
                r["served"] = self.blocks.served(r["shard"])
        return [dict(self.receipts[i]) for i in ids]

    def _deactivate(self, sample_id: int) -> dict[str, Any]:
        shard, slc = self.partition.owner[sample_id]
        switched = self.blocks.switch_off(shard, slc)
        self.partition.deleted.add(sample_id)
        return {"sample_id": sample_id, "shard": shard, "slice": slc, "switched_off": switched}

    # -- retraining ------------------------------------------------------------------------------
    def _deleted_in(self, shard: int) -> frozenset[int]:
        return frozenset(i for i in self.partition.deleted if self.partition.owner[i][0] == shard)

    def retrainable_stages(self, shard: int) -> list[tuple[int, int]]:
        """The switched-off blocks a retrain can train: those of sequences whose first slice
        still holds data. A sequence whose first slice was deleted whole has nothing to start
        from (its first block would train on no data); its blocks stay off."""
        sizes = self.partition.slice_sizes()[shard]
        first = [order[0] for order in self.blocks.sequences]
        return [(b, k) for b, k in self.blocks.off_stages(shard) if sizes[first[b]] > 0]

    def prepare_retrain(self, shard: int) -> RetrainTicket:
        """Retrain the switched-off blocks of ``shard`` on its remaining data, without touching
        the served model (a service can run this in the background)."""
        if not 0 <= shard < self.config.num_shards:
            raise NotFoundError(f"shard {shard} does not exist (0..{self.config.num_shards - 1})")
        stages = self.retrainable_stages(shard)
        deleted = self._deleted_in(shard)
        start = time.perf_counter()
        weights = self.executor.map(run_shard_job, [self._job(shard, stages)])[0] if stages else {}
        return RetrainTicket(shard, deleted, weights, time.perf_counter() - start, tuple(stages))

    def commit_retrain(self, ticket: RetrainTicket, bump_version: bool = True) -> None:
        """Swap a prepared retrain in; refused if the shard lost samples since it was prepared."""
        if self._deleted_in(ticket.shard) != ticket.deleted_in_shard:
            raise ConflictError(
                f"shard {ticket.shard} had deletions after this retrain was "
                "prepared; prepare it again"
            )
        if ticket.weights:
            self.stack.load_blocks(ticket.weights)
            self.blocks.revive(ticket.shard, ticket.stages)
            self.retrains_done += 1
            self.retrain_seconds += ticket.seconds
            if bump_version:
                self.version += 1

    def retrain_shard(self, shard: int) -> None:
        self.commit_retrain(self.prepare_retrain(shard))

    # -- status ----------------------------------------------------------------------------------
    def status(self, simulate: bool = True) -> dict[str, Any]:
        m, L = self.config.num_shards, self.config.num_slices
        plan = self.serving_plan()
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "version": self.version,
            "num_shards": m,
            "num_slices": L,
            "num_sequences": len(self.sequences),
            "live_shards": sorted(plan),
            "dead_shards": self.dead_shards(),
            "serving": {str(s): {"sequence": b, "prefix": p} for s, (b, p) in plan.items()},
            "deletions": len(self.receipts),
            "live_samples": self.partition.num_live,
            "capacity_total_theory": self.capacity_theory(),
            "remaining_capacity_theory": remaining_capacity_theory(m, L, self.blocks.first_cells()),
            "retrains_done": self.retrains_done,
            "retrain_seconds": round(self.retrain_seconds, 3),
            "retrains_pending": self.blocks.pending_shards(),
            "retrain_policy": self.config.retrain_policy,
        }
        if simulate:
            sim = simulate_capacity(
                m,
                L,
                self.sequences,
                prior=self._prior(),
                trials=300,
                seed=self.version,
                initial_prefix=self.prefix_lengths(),
            )
            out["remaining_capacity_simulated"] = sim.mean
        return out

    def clone(self) -> Self:
        """An independent copy (a service prepares changes on one, then swaps it in)."""
        executor, self.executor = self.executor, LocalExecutor()
        # the training data and its row index are never written: the copy shares them
        shared = {id(self.data): self.data, id(self._row_of): self._row_of}
        try:
            twin = copy.deepcopy(self, shared)
        finally:
            self.executor = executor
        twin.executor = executor
        return twin

    # -- persistence -----------------------------------------------------------------------------
    def switched_on_names(self) -> list[str]:
        """Blocks trained on live data only: the only ones a save writes (a switched-off block
        saw a deleted sample; a retrain starts it afresh from its seeded init)."""
        s_, b_, k_ = np.nonzero(self.alive)
        return [block_name(int(s), int(b), int(k)) for s, b, k in zip(s_, b_, k_, strict=True)]

    def save(self, directory: str | Path) -> Path:
        """Atomic: the previous state stays loadable until the new one is complete."""
        return self.frozen_save()(directory)

    def frozen_save(self) -> Callable[[str | Path], Path]:
        """Capture now what a save writes, and return the function that writes it later.

        The capture copies only what a change can alter (the deleted set, the alive table,
        the switched-on blocks' tensors, receipts and counters) and shares what none does (the
        data, the owner map, the backbone), so a service takes it in milliseconds under its
        lock; selecting the live samples and writing happen in the returned call, on any
        thread, while the ensemble goes on changing."""
        partition = copy.deepcopy(self.partition)  # shares the owner map, copies `deleted`
        data = self.data
        fields = {
            "kind": self.scheme,
            "config": self.config.model_dump(mode="json"),
            "spec": self.spec,
            "partition": partition,
            "sequences": copy.deepcopy(self.sequences),
            "alive": self.alive.copy(),
            "backbone": self.backbone_state,  # never written after training
            "blocks": self.stack.block_state(self.switched_on_names()),  # tensor copies
            "version": self.version,
            "receipts": dict(self.receipts),  # a receipt is never changed once written
            "retrains_done": self.retrains_done,
            "retrain_seconds": self.retrain_seconds,
            "train_seconds": self.train_seconds,
            "meta": copy.deepcopy(self.meta),
        }

        def write(directory: str | Path) -> Path:
            live = data.select_ids(sorted(set(data.ids.tolist()) - partition.deleted))
            return save_ensemble(directory, SavedEnsemble(data=live, **fields))

        return write

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        state = read_ensemble(directory)
        if state.kind != cls.scheme:
            raise UnlearnkitError(
                f"{directory} holds a {state.kind!r} ensemble, not {cls.scheme!r}"
            )
        try:
            # saved before head_init existed: their first-stage heads started at random
            config = cls.config_type.model_validate({"head_init": "random", **state.config})
            self = cls(
                config,
                state.spec,
                state.backbone,
                state.partition,
                state.sequences,
                state.data,
            )
            self.stack.load_blocks(state.blocks)
            self.alive = state.alive
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UnlearnkitError(
                f"saved ensemble in {directory} is malformed or does not fit its model: {exc}"
            ) from None
        self.version = state.version
        self.receipts = state.receipts
        self.retrains_done = state.retrains_done
        self.retrain_seconds = state.retrain_seconds
        self.train_seconds = state.train_seconds
        self.meta = state.meta
        return self
