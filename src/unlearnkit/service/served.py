"""What the service needs from a model: the ``ServedModel`` protocol and its registry.

Two adapters implement it: ``exact`` (an S3T ensemble: a deletion switches blocks off at once,
a dead shard is retrained in the background) and ``approximate`` (a Fast-NTK state: deletions
are queued and applied as one Woodbury downdate). The service calls these methods under its
model lock, from one applier thread for changes, so adapters need no locking of their own.

A prediction takes a ``ModelView`` under the lock (cheap: which blocks serve, which network)
and runs it after the lock is released, so a change waits for no forward pass. Forward passes
of a model with ``shares_modules`` (adapters switched on one backbone) run one at a time; a
change whose kind is in ``in_place_changes`` (it writes the served weights in place) waits for
the forward pass in flight, and views taken before it are taken again.

Retraining is split so that no lock is held while a model trains: ``prepare_retrain`` (under the
lock) copies what the training needs into a ``RetrainJob``; the service runs ``job.train`` with
no lock held (in a child process or a thread); ``job.finish`` turns the result into the ticket
that ``commit_retrain`` (under the lock again, in ledger order) swaps in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.errors import UnlearnkitError
from unlearnkit.registry import Registry


@dataclass(frozen=True)
class RetrainJob:
    """A retrain taken out of the served model, to run while the model keeps serving.

    ``train(inputs)`` is the training: a module-level function (picklable, so it can run in a
    child process) on copies (what is shared is read-only), so it never touches what the served
    model changes; ``train is None`` when there is nothing to train. ``finish(result, seconds)``
    gives the ticket for ``commit_retrain``; it is cheap and reads only what was captured.
    """

    unit: int
    train: Callable[[Any], Any] | None
    inputs: Any
    finish: Callable[[Any, float], Any]


@dataclass(frozen=True)
class ModelView:
    """What one prediction uses: the model ``version`` and ``logits(x)`` on that version.
    ``batch_key``: set by a model whose views are immutable and safe to share; predictions with
    the same key may run as one pass (micro-batching, ``batching.py``). None: never batched."""

    version: int
    logits: Callable[[torch.Tensor], torch.Tensor]
    batch_key: Any = None


class SnapshotCopy(Protocol):
    """A served model's state frozen at one version: enough to write a snapshot of it."""

    @property
    def version(self) -> int: ...

    def deleted_ids(self) -> set[int]: ...

    def save(self, directory: Path) -> None: ...


@runtime_checkable
class ServedModel(Protocol):
    mode: str  # "exact" | "approximate"
    applies_immediately: bool  # True: a deletion is applied before the 202 is sent
    batches_deletions: bool  # True: consecutive queued deletions are applied as one change
    shares_modules: bool  # True: forward passes change shared module state, one at a time
    in_place_changes: frozenset[str]  # change kinds that write the served weights in place
    deletes_online: bool  # False: a deletion is refused (409) and nothing is recorded
    refusal: str  # what that 409 says (what to run instead); "" when deletes_online

    @property
    def version(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, int, int]: ...  # (C, H, W)

    # how pixels become this model's inputs (its saved record): applied to every request
    preprocessing: Preprocessing

    @property
    def num_classes(self) -> int: ...

    def identity(self) -> dict[str, str]:
        """What ties a ledger to this model (compared each time the ledger is opened)."""
        ...

    def view(self) -> ModelView:
        """The current version for one prediction (cheap; taken under the lock)."""
        ...

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor: ...

    def known(self, sample_id: int) -> bool:
        """Is ``sample_id`` in the ownership map (the training set) of this model?"""
        ...

    def deleted_ids(self) -> set[int]: ...

    def apply_deletions(self, sample_ids: list[int]) -> dict[str, Any]:
        """Forget these samples now; returns the receipt (what was switched off or updated)."""
        ...

    def pending_retrains(self) -> list[int]:
        """Units (shards) that should be retrained in the background; [] if none ever."""
        ...

    def prepare_retrain(self, unit: int) -> RetrainJob:
        """Copy what retraining ``unit`` needs from the current state (cheap; under the lock)."""
        ...

    def commit_retrain(self, ticket: Any) -> dict[str, Any]:
        """Swap a prepared retrain in (ConflictError if the unit changed meanwhile)."""
        ...

    def retrain(self, unit: int) -> dict[str, Any]:
        """Prepare and commit in one go (used when replaying the ledger)."""
        ...

    def status(self) -> dict[str, Any]:
        """For GET /v1/model, under the model lock. An optional ``_deferred`` entry is a
        callable (on copied inputs) whose dict is merged in after the lock is released."""
        ...

    def clone(self) -> ServedModel:
        """An independent copy of the whole model."""
        ...

    def snapshot_copy(self) -> SnapshotCopy:
        """What a snapshot writes, captured under the lock (so keep it fast: the applier's next
        change waits for it) and written later on the snapshot thread."""
        ...

    def save(self, directory: Path) -> None: ...

    def verify(self) -> None:
        """Raise UnlearnkitError if the files it was loaded from are damaged."""
        ...


# name -> loader(model_dir, snapshot_dir, **options) -> ServedModel
SERVED_MODELS: Registry[ServedModel] = Registry("serving mode")


# ``--mode auto`` tries these in order: an ensemble, then an NTK state, then plain weights.
AUTO_ORDER = ("exact", "approximate", "static")


def detect_mode(model_dir: Path) -> str:
    """The serving mode a model directory's files call for (one line naming what is missing)."""
    for mode in AUTO_ORDER:
        if SERVED_MODELS.get(mode).recognises(Path(model_dir)):  # type: ignore[attr-defined]
            return mode
    raise UnlearnkitError(
        f"{model_dir} holds no servable model: train one with `unlearnkit train`, "
        "`unlearnkit unlearn` or `unlearnkit s3t train`"
    )


def load_served(
    mode: str, model_dir: Path, snapshot_dir: Path | None = None, **options: Any
) -> ServedModel:
    """The base model in ``model_dir``, or its state as saved in ``snapshot_dir`` by the service
    (the adapter may still read unchanging files, such as w0 or the data, from ``model_dir``)."""
    return SERVED_MODELS.create(
        mode, model_dir=Path(model_dir), snapshot_dir=snapshot_dir, **options
    )
