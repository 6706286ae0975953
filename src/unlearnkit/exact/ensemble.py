"""Sharded exact-unlearning ensembles: train once, delete by switching blocks off, retrain by
policy, serve the mean logits of live shards. S3T and SISA differ only in their stack scheme,
their sequences and their defaults (see ``s3t.py`` and ``sisa.py``).

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.exact.backbone import random_backbone
from unlearnkit.exact.capacity import harmonic, simulate_capacity
from unlearnkit.exact.config import ShardedConfig
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.stack import LoRAStack, ModelSpec, Scheme, block_name
from unlearnkit.exact.store import load_record, read_kind, save_record
from unlearnkit.exact.trainer import ShardJob, run_shard_job
from unlearnkit.registry import Registry
from unlearnkit.runtime import Executor, LocalExecutor

Plan = dict[int, tuple[int, int]]  # shard -> (sequence, prefix length) it serves


@dataclass
class RetrainTicket:
    """A retrain computed off to the side; ``commit_retrain`` swaps it in if still valid."""

    shard: int
    deleted_in_shard: frozenset[int]
    weights: dict[str, torch.Tensor]
    seconds: float


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
        spec: ModelSpec,
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
        m, b, L = config.num_shards, len(sequences), config.num_slices
        self.alive = np.ones((m, b, L), dtype=bool)
        self.version = 0
        self.receipts: dict[int, dict[str, Any]] = {}
        self.retrains_done = 0
        self.retrain_seconds = 0.0
        self.train_seconds = 0.0
        self.executor: Executor = LocalExecutor()
        self.meta: dict[str, Any] = {}  # where the data came from (dataset, fingerprint, ...)
        self.stack = LoRAStack(spec, backbone_state, self.scheme, L, range(m), b)

    # -- training --------------------------------------------------------------------------------
    @classmethod
    def _sequences(cls, config: ShardedConfig) -> list[tuple[int, ...]]:
        raise NotImplementedError

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
        spec = ModelSpec(
            config.model,
            num_classes or int(data.y.max()) + 1,
            int(data.x.shape[1]),
            int(data.x.shape[-1]),
            dict(config.model_options),
            config.lora_rank,
            config.lora_alpha,
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
        data = ArraySplit(data.x.clone(), data.y.clone(), data.ids.clone())
        partition = Partition(
            partition.num_shards,
            partition.num_slices,
            partition.seed,
            dict(partition.owner),
            set(partition.deleted),
        )
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

    def _shard_names(self, shard: int) -> list[str]:
        return [
            block_name(shard, b, k)
            for b in range(len(self.sequences))
            for k in range(self.config.num_slices)
        ]

    def _job(self, shard: int, stages: list[tuple[int, int]]) -> ShardJob:
        return ShardJob(
            scheme=self.scheme,
            spec=self.spec,
            backbone_state=self.backbone_state,
            num_stages=self.config.num_slices,
            shard=shard,
            sequences=self.sequences,
            stages=stages,
            weights=self.stack.block_state(self._shard_names(shard)),
            data=self._shard_data(shard),
            slice_of={i: self.partition.owner[i][1] for i in self.partition.members(shard)},
            train=self.config.train,
            seed=self.config.seed,
        )

    # -- serving ---------------------------------------------------------------------------------
    def prefix_lengths(self) -> np.ndarray:
        """(m, B) surviving prefix length of every sequence."""
        return np.where(self.alive.all(axis=2), self.alive.shape[2], self.alive.argmin(axis=2))

    def serving_plan(self) -> Plan:
        """Each live shard serves its sequence with the longest surviving prefix (lowest index
        on ties)."""
        lengths = self.prefix_lengths()
        return {
            s: (int(lengths[s].argmax()), int(lengths[s].max()))
            for s in range(lengths.shape[0])
            if lengths[s].max() > 0
        }

    def dead_shards(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.prefix_lengths().max(axis=1) == 0)]

    @torch.no_grad()
    def predict_logits(
        self, x: torch.Tensor, plan: Plan | None = None, batch_size: int = 512
    ) -> torch.Tensor:
        """Mean logits over live shards, each with its served prefix (or ``plan``)."""
        plan = self.serving_plan() if plan is None else plan
        if not plan:
            raise ConflictError("every shard is dead: retrain (retrain_shard) before predicting")
        outs = []
        for chunk in x.split(batch_size):
            total = None
            for shard in sorted(plan):
                seq, length = plan[shard]
                adapters, head = self.stack.prefix(shard, seq, length)
                out = self._aggregate(self.stack(chunk, adapters, head))
                total = out if total is None else total + out
            outs.append(total / len(plan))
        return torch.cat(outs)

    def _aggregate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_logits(x).argmax(dim=1)

    def accuracy(self, split: ArraySplit) -> float:
        return 100.0 * float((self.predict(split.x) == split.y).float().mean())

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
                    "served": self._served(shard),
                    "note": "not in the training data of this ensemble",
                }
        fresh = [i for i in dict.fromkeys(ids) if i not in self.receipts]
        if fresh:
            self.version += 1
            for i in fresh:
                self.receipts[i] = self._deactivate(i)
            touched = sorted({self.receipts[i]["shard"] for i in fresh})
            retrained = self._apply_policy(touched)
            for i in fresh:
                r = self.receipts[i]
                r["version"] = self.version
                r["retrained_shards"] = retrained
                r["served"] = self._served(r["shard"])
        return [dict(self.receipts[i]) for i in ids]

    def _deactivate(self, sample_id: int) -> dict[str, Any]:
        shard, slc = self.partition.owner[sample_id]
        switched = []
        for b, order in enumerate(self.sequences):
            pos = order.index(slc)
            newly = [k for k in range(pos, self.config.num_slices) if self.alive[shard, b, k]]
            if newly:
                self.alive[shard, b, pos:] = False
                switched.append(
                    {
                        "sequence": b,
                        "blocks": newly,
                        "adapters": [block_name(shard, b, k) for k in newly],
                    }
                )
        self.partition.deleted.add(sample_id)
        self.data.x[self._row_of[sample_id]].zero_()  # the sample's content leaves memory too
        return {"sample_id": sample_id, "shard": shard, "slice": slc, "switched_off": switched}

    def _served(self, shard: int) -> dict[str, int] | None:
        seq_len = self.serving_plan().get(shard)
        return None if seq_len is None else {"sequence": seq_len[0], "prefix": seq_len[1]}

    def _apply_policy(self, touched: list[int]) -> list[int]:
        policy = self.config.retrain_policy
        dead = self.dead_shards()
        if policy == "eager":
            todo = [s for s in touched if not self.alive[s].all()]
        elif policy == "dead_shard":
            todo = dead
        elif policy == "all_dead":
            todo = dead if len(dead) == self.config.num_shards else []
        else:
            todo = []
        for shard in todo:
            self.commit_retrain(self.prepare_retrain(shard), bump_version=False)
        return todo

    # -- retraining ------------------------------------------------------------------------------
    def prepare_retrain(self, shard: int) -> RetrainTicket:
        """Retrain the switched-off blocks of ``shard`` on its remaining data, without touching
        the served model (a service can run this in the background)."""
        if not 0 <= shard < self.config.num_shards:
            raise NotFoundError(f"shard {shard} does not exist (0..{self.config.num_shards - 1})")
        stages = [
            (b, k)
            for b in range(len(self.sequences))
            for k in range(self.config.num_slices)
            if not self.alive[shard, b, k]
        ]
        deleted = frozenset(
            i for i in self.partition.deleted if self.partition.owner[i][0] == shard
        )
        start = time.perf_counter()
        weights = self.executor.map(run_shard_job, [self._job(shard, stages)])[0] if stages else {}
        return RetrainTicket(shard, deleted, weights, time.perf_counter() - start)

    def commit_retrain(self, ticket: RetrainTicket, bump_version: bool = True) -> None:
        """Swap a prepared retrain in; refused if the shard lost samples since it was prepared."""
        now = frozenset(
            i for i in self.partition.deleted if self.partition.owner[i][0] == ticket.shard
        )
        if now != ticket.deleted_in_shard:
            raise ConflictError(
                f"shard {ticket.shard} had deletions after this retrain was "
                "prepared; prepare it again"
            )
        if ticket.weights:
            self.stack.load_blocks(ticket.weights)
            self.alive[ticket.shard] = True
            self.retrains_done += 1
            self.retrain_seconds += ticket.seconds
            if bump_version:
                self.version += 1

    def retrain_shard(self, shard: int) -> None:
        self.commit_retrain(self.prepare_retrain(shard))

    # -- status ----------------------------------------------------------------------------------
    def status(self, simulate: bool = True) -> dict[str, Any]:
        m, L = self.config.num_shards, self.config.num_slices
        lengths = self.prefix_lengths()
        first_cells = {
            (s, self.sequences[b][0])
            for s in range(m)
            for b in range(len(self.sequences))
            if lengths[s, b] > 0
        }
        remaining_theory = m * L * harmonic(len(first_cells)) if first_cells else 0.0
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "version": self.version,
            "num_shards": m,
            "num_slices": L,
            "num_sequences": len(self.sequences),
            "live_shards": sorted(self.serving_plan()),
            "dead_shards": self.dead_shards(),
            "serving": {
                str(s): {"sequence": b, "prefix": p} for s, (b, p) in self.serving_plan().items()
            },
            "deletions": len(self.receipts),
            "live_samples": self.partition.num_live,
            "capacity_total_theory": self.capacity_theory(),
            "remaining_capacity_theory": remaining_theory,
            "retrains_done": self.retrains_done,
            "retrain_seconds": round(self.retrain_seconds, 3),
            "retrains_pending": [s for s in range(m) if not self.alive[s].all()],
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
                initial_prefix=lengths,
            )
            out["remaining_capacity_simulated"] = sim.mean
        return out

    def capacity_theory(self) -> float:
        raise NotImplementedError

    def _prior(self) -> list[float] | None:
        return None

    def clone(self) -> Self:
        """An independent copy (a service prepares changes on one, then swaps it in)."""
        executor, self.executor = self.executor, LocalExecutor()
        try:
            twin = copy.deepcopy(self)
        finally:
            self.executor = executor
        twin.executor = executor
        return twin

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Atomic: the previous state stays loadable until the new one is complete."""
        record = {
            "kind": self.scheme,
            "version": self.version,
            "config": self.config.model_dump(mode="json"),
            "spec": self.spec.to_dict(),
            "partition": self.partition.to_dict(),
            "sequences": [list(o) for o in self.sequences],
            "alive": self.alive.astype(int).tolist(),
            "receipts": {str(k): v for k, v in self.receipts.items()},
            "retrains_done": self.retrains_done,
            "retrain_seconds": self.retrain_seconds,
            "train_seconds": self.train_seconds,
            "meta": self.meta,
        }
        live = self.data.select_ids(sorted(set(self.data.ids.tolist()) - self.partition.deleted))
        names = [n for s in range(self.config.num_shards) for n in self._shard_names(s)]
        files = {
            "backbone": self.backbone_state,
            "blocks": self.stack.block_state(names),
            "data": {"x": live.x, "y": live.y, "ids": live.ids},
        }
        return save_record(directory, record, files)

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        record, files = load_record(directory)
        if record.get("kind") != cls.scheme:
            raise UnlearnkitError(
                f"{directory} holds a {record.get('kind')!r} ensemble, not {cls.scheme!r}"
            )
        try:
            config = cls.config_type.model_validate(record["config"])
            d = files["data"]
            self = cls(
                config,
                ModelSpec(**record["spec"]),
                files["backbone"],
                Partition.from_dict(record["partition"]),
                [tuple(o) for o in record["sequences"]],
                ArraySplit(d["x"], d["y"], d["ids"]),
            )
            self.stack.load_blocks(files["blocks"])
            self.alive = np.asarray(record["alive"], dtype=bool)
            if self.alive.shape != (config.num_shards, len(self.sequences), config.num_slices):
                raise ValueError(f"block table has shape {self.alive.shape}")
            self.version = int(record["version"])
            self.receipts = {int(k): v for k, v in record["receipts"].items()}
            self.retrains_done = int(record["retrains_done"])
            self.retrain_seconds = float(record["retrain_seconds"])
            self.train_seconds = float(record.get("train_seconds", 0.0))
            self.meta = dict(record.get("meta", {}))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UnlearnkitError(
                f"saved ensemble in {directory} is malformed or does not fit its model: {exc}"
            ) from None
        return self
