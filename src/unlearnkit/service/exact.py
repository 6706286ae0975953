"""Exact mode: an S3T ensemble behind the ServedModel protocol.

A deletion switches off every block that saw the sample (milliseconds, no training); a shard
left with nothing to serve is retrained in the background on its remaining data and swapped in.
The ensemble's own retrain policy is forced to ``manual``: the service decides when to retrain.

Predictions use the packed pass by default (``exact_pass``): each version is an immutable
:class:`~unlearnkit.exact.packed.PackedView`, built when a deletion or a finished retrain
changes what is served and swapped in by one assignment, so a forward pass shares nothing that
a change writes and concurrent requests may share a pass. ``exact_pass = "loop"`` serves with
the per-shard loop on the shared stack (one pass at a time, as before).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact import RetrainTicket, S3TEnsemble, SISAEnsemble
from unlearnkit.exact.capacity import simulate_capacity
from unlearnkit.exact.packed import PackedView
from unlearnkit.exact.recipe import ensemble_preprocessing
from unlearnkit.exact.store import POINTER, tensor_digest
from unlearnkit.runtime import Executor
from unlearnkit.service.served import SERVED_MODELS, ModelView, RetrainJob


class _Deferred(Executor):
    """An executor that records the training jobs it is handed instead of running them.

    ``ShardedEnsemble.prepare_retrain`` builds the job (copies of the shard's data and blocks)
    and hands it to the ensemble's executor; with this one in place it returns at once, and the
    service runs the recorded job itself with the model lock released."""

    name = "deferred"

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[Any], Any], Any]] = []

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        self.jobs += [(fn, item) for item in items]
        return [None for _ in items]


@dataclass(frozen=True)
class FrozenEnsemble:
    """An ensemble's save captured at one version (see ``ShardedEnsemble.frozen_save``)."""

    version: int
    deleted: frozenset[int]
    write: Callable[[Path], Path]

    def deleted_ids(self) -> set[int]:
        return set(self.deleted)

    def save(self, directory: Path) -> None:
        self.write(directory)


@SERVED_MODELS.register("exact")
class ExactServedModel:
    mode = "exact"
    applies_immediately = True
    batches_deletions = False
    shares_modules = True  # loop pass: adapters are switched on one backbone per forward
    in_place_changes = frozenset({"retrain"})  # a deletion only switches blocks off
    deletes_online = True
    refusal = ""

    @classmethod
    def recognises(cls, directory: Path) -> bool:
        return (Path(directory) / POINTER).is_file()

    def __init__(
        self, model_dir: Path, snapshot_dir: Path | None = None, config: Any = None
    ) -> None:
        self.directory = Path(snapshot_dir or model_dir)
        kinds = {cls.scheme: cls for cls in (S3TEnsemble, SISAEnsemble)}
        kind = _record(self.directory).get("kind")
        if kind not in kinds:
            raise UnlearnkitError(
                f"{self.directory} holds a {kind!r} ensemble; exact mode "
                f"serves {' or '.join(sorted(kinds))}"
            )
        self.ensemble = kinds[kind].load(self.directory)
        self.preprocessing = ensemble_preprocessing(self.ensemble.meta, self.ensemble.spec)
        self._capacity_cache: dict[tuple[bytes, int], float] = {}
        # the policy it was trained with (the CLI follows it; the service retrains itself)
        self.ensemble.meta.setdefault("retrain_policy", self.ensemble.config.retrain_policy)
        if self.ensemble.config.retrain_policy != "manual":
            self.ensemble.config = self.ensemble.config.model_copy(
                update={"retrain_policy": "manual"}
            )
        self.packed = getattr(config, "exact_pass", "packed") == "packed"
        self.shares_modules = not self.packed  # a packed view reads nothing a change writes
        self._packed: tuple[int, PackedView] | None = None
        self._swap_view()

    def _swap_view(self) -> None:
        """Build the packed view of what is served now and swap it in (None: the loop pass,
        or every shard dead, which the loop refuses with its own message)."""
        ens = self.ensemble
        fresh = ens.packed_view() if self.packed and ens.serving_plan() else None
        self._packed = None if fresh is None else (int(ens.version), fresh)

    # -- description -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.ensemble.version)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        spec = self.ensemble.spec
        return (int(spec.in_chans), int(spec.image_size), int(spec.image_size))

    @property
    def num_classes(self) -> int:
        return int(self.ensemble.spec.num_classes)

    def identity(self) -> dict[str, str]:
        part = self.ensemble.partition.to_dict()
        part.pop("deleted")
        owner = hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]
        return {"mode": self.mode, "scheme": str(self.ensemble.scheme), "ownership": owner}

    # -- serving -----------------------------------------------------------------------------
    def view(self) -> ModelView:
        if self._packed is not None:
            version, packed = self._packed
            return ModelView(version, packed.logits, batch_key=packed)
        plan, ensemble, packed = self.ensemble.serving_plan(), self.ensemble, self.packed
        return ModelView(
            int(ensemble.version), lambda x: ensemble.predict_logits(x, plan, packed=packed)
        )

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble.predict_logits(x, packed=self.packed)

    def known(self, sample_id: int) -> bool:
        return self.ensemble.partition.locate(sample_id) is not None

    def deleted_ids(self) -> set[int]:
        return set(self.ensemble.partition.deleted)

    # -- changes -----------------------------------------------------------------------------
    def apply_deletions(self, sample_ids: list[int]) -> dict[str, Any]:
        receipts = self.ensemble.delete(sample_ids)
        self._swap_view()
        return {"kind": "deactivation", "samples": receipts}

    def pending_retrains(self) -> list[int]:
        """Dead shards a retrain can revive (one whose every sequence lost its first slice
        whole stays dead: there is nothing to train it from)."""
        return [s for s in self.ensemble.dead_shards() if self.ensemble.retrainable_stages(s)]

    def prepare_retrain(self, unit: int) -> RetrainJob:
        """The ensemble's own retrain preparation, with its training job recorded, not run."""
        deferred = _Deferred()
        saved, self.ensemble.executor = self.ensemble.executor, deferred
        try:
            ticket = self.ensemble.prepare_retrain(unit)
        finally:
            self.ensemble.executor = saved
        if not deferred.jobs:  # nothing switched off: the ticket is complete as it is
            return RetrainJob(unit, None, None, lambda _result, _seconds: ticket)
        ((train, inputs),) = deferred.jobs

        def finish(weights: dict[str, torch.Tensor], seconds: float) -> RetrainTicket:
            return dataclasses.replace(ticket, weights=weights, seconds=seconds)

        return RetrainJob(unit, train, inputs, finish)

    def commit_retrain(self, ticket: RetrainTicket) -> dict[str, Any]:
        self.ensemble.commit_retrain(ticket)
        self._swap_view()
        return {
            "kind": "retrain",
            "shard": int(ticket.shard),
            "blocks_retrained": len(ticket.weights),
            "seconds": round(ticket.seconds, 3),
        }

    def retrain(self, unit: int) -> dict[str, Any]:
        return self.commit_retrain(self.ensemble.prepare_retrain(unit))

    # -- state -------------------------------------------------------------------------------
    def live_shard_count(self) -> int:
        """Shards serving predictions (the ``unlearnkit_live_shards`` gauge)."""
        return len(self.ensemble.serving_plan())

    def status(self) -> dict[str, Any]:
        """Cheap fields now; the Monte Carlo capacity (tens of ms) as ``_deferred``, a callable
        on copied inputs that the service runs after releasing the model lock (cached per
        prefix state, so polling /v1/model does not slow predictions down)."""
        ens = self.ensemble
        out = ens.status(simulate=False)
        lengths = ens.prefix_lengths().copy()
        key = (lengths.tobytes(), int(ens.version))
        args = (ens.config.num_shards, ens.config.num_slices, list(ens.sequences), ens._prior())
        cache = self._capacity_cache

        def simulated() -> dict[str, Any]:
            value = cache.get(key)
            if value is None:  # two callers may both compute it: same inputs, same result
                m, L, seqs, prior = args
                sim = simulate_capacity(
                    m, L, seqs, prior=prior, trials=300, seed=key[1], initial_prefix=lengths
                )
                value = float(sim.mean)
                cache.clear()
                cache[key] = value
            return {"simulated": value}

        return {
            "live_shards": out.get("live_shards"),
            "dead_shards": out.get("dead_shards"),
            "serving": out.get("serving"),
            "deleted_samples": len(ens.partition.deleted),
            "live_samples": out.get("live_samples"),
            "remaining_capacity": {
                "theory": out.get("remaining_capacity_theory"),
                "simulated": None,
                "total_theory": out.get("capacity_total_theory"),
            },
            "retrains_done": out.get("retrains_done"),
            "retrains_pending": out.get("retrains_pending"),
            "config": {
                "num_shards": out.get("num_shards"),
                "num_slices": out.get("num_slices"),
                "num_sequences": out.get("num_sequences"),
            },
            "_deferred": lambda: {"remaining_capacity": simulated()},
        }

    def clone(self) -> ExactServedModel:
        """A deep copy that shares the ensemble's executor (workers are not copied)."""
        executor = self.ensemble.executor
        return copy.deepcopy(self, {id(executor): executor})

    def snapshot_copy(self) -> FrozenEnsemble:
        """The ensemble's save, captured (``frozen_save``: copies of what changes only; on
        the 42,000-sample Fashion-MNIST ensemble a full deep copy held the applier ~90 ms
        under prediction load, and the deletion after each snapshot waited for it)."""
        ens = self.ensemble
        return FrozenEnsemble(self.version, frozenset(ens.partition.deleted), ens.frozen_save())

    def save(self, directory: Path) -> None:
        self.ensemble.save(directory)

    def verify(self) -> None:
        """Every tensor file is named after its content digest: recompute and compare."""
        record = _record(self.directory)
        for name in record.get("files", {}).values():
            match = re.search(r"-([0-9a-f]+)\.safetensors$", name)
            if match and tensor_digest(load_file(str(self.directory / name))) != match.group(1):
                raise UnlearnkitError(
                    f"model file {self.directory / name} does not match its checksum "
                    "(corrupted); refusing to serve it"
                )


def _record(directory: Path) -> dict[str, Any]:
    """The JSON record the ensemble's CURRENT pointer names (no tensors loaded)."""
    try:
        return json.loads((directory / (directory / POINTER).read_text().strip()).read_text())
    except (OSError, ValueError) as exc:
        raise UnlearnkitError(
            f"{directory} holds no readable ensemble ({exc}); train one with "
            "`unlearnkit s3t train --out DIR`"
        ) from None
