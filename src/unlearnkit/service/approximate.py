"""Approximate mode: a trained model with a Fast-NTK state behind the ServedModel protocol.

The model directory is what ``unlearnkit train --out DIR`` wrote plus the state of
``unlearnkit ntk precompute --from DIR``. Deletions are queued and applied by the service's
applier as one Woodbury downdate per batch (the Jacobians of the deleted samples only); the
served function is then rebuilt from the new ridge solution:

- ``linearized`` (default): f(x; w0) + J(x) (w_Dr - w0), which after the downdate equals the
  same linearized model retrained on the remaining data (up to float64 round-off); its logits
  are on the scale of the state's regression targets (``ntk precompute --target``: ``scaled``
  gives a usable softmax, ``onehot`` a nearly flat one);
- ``paper``: the trained network moved by the angle-scaled difference of the two solutions
  (docs/algorithms.md §1.4); close to retraining, not equal.

Nothing is ever retrained. A snapshot holds the downdated state and a small JSON record; the
network, w0 and the training data are re-read from the model directory.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.ntk.deployment import (
    STATE_FILE,
    check_update,
    open_state,
    receipt_kind,
    state_solutions,
    unlearned_model,
)
from unlearnkit.ntk.incremental import delete_samples
from unlearnkit.recipe import open_trained
from unlearnkit.runtime.device import current_runtime
from unlearnkit.service.served import SERVED_MODELS, ModelView, RetrainJob

RECORD_FILE = "approximate.json"


@SERVED_MODELS.register("approximate")
class ApproximateServedModel:
    mode = "approximate"
    applies_immediately = False
    batches_deletions = True
    # the linearized network's forward pass uses torch's forward-mode AD, whose dual levels are
    # process-wide: passes run one at a time (measured: concurrent ones fail)
    shares_modules = True
    in_place_changes: frozenset[str] = frozenset()  # every change builds a new network
    deletes_online = True
    refusal = ""

    @classmethod
    def recognises(cls, directory: Path) -> bool:
        return (Path(directory) / STATE_FILE).is_file()

    def __init__(
        self, model_dir: Path, snapshot_dir: Path | None = None, config: Any = None
    ) -> None:
        self.update = getattr(config, "ntk_update", "linearized")
        check_update(self.update)
        self.model_dir = Path(model_dir)
        opened = open_trained(self.model_dir)
        self.trained, self.bundle = opened.trained, opened.bundle
        self.preprocessing = opened.preprocessing
        source = Path(snapshot_dir) if snapshot_dir is not None else self.model_dir
        self.state = open_state(
            source / STATE_FILE,
            self.trained.initial_state,
            self.trained.trainable,
            self.bundle.train.fingerprint(),
            model_dir=self.model_dir,
        )
        self._version = 0
        if snapshot_dir is not None or (source / RECORD_FILE).is_file():  # a rewritten base
            record = _read_record(source / RECORD_FILE)
            self._version = int(record["version"])
            if int(record["deleted"]) != int((~self.state.alive).sum()):
                raise UnlearnkitError(f"{source}: record and NTK state disagree; refusing to start")
        self._ids = frozenset(int(i) for i in self.state.ids.tolist())
        self.served: nn.Module = self._build()

    # -- description -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.bundle.train.samples.sample_shape  # no pixel is loaded
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return int(self.state.num_classes)

    def identity(self) -> dict[str, str]:
        fp = self.state.fingerprint
        return {
            "mode": self.mode,
            "w0": fp.get("w0", ""),
            "data": fp.get("data", ""),
            "params": fp.get("params", ""),
            "lam": fp.get("lam", ""),
        }

    # -- serving -----------------------------------------------------------------------------
    def _build(self) -> nn.Module:
        """The served network for the current state (a new module; the old one is untouched)."""
        t = self.trained
        served = unlearned_model(  # the paper update changes its input: give it a copy
            copy.deepcopy(t.model),
            t.trainable,
            t.initial_state,
            state_solutions(self.state),
            self.update,
        )
        return current_runtime().module(served.eval())  # kept on the serving device

    def view(self) -> ModelView:
        served = self.served

        def logits(x: torch.Tensor) -> torch.Tensor:
            runtime = current_runtime()  # the serving runtime: its device and autocast
            with torch.no_grad(), runtime.autocast():
                return runtime.to_cpu(served(runtime.tensor(x)).detach())

        return ModelView(self._version, logits)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.view().logits(x)

    def known(self, sample_id: int) -> bool:
        return int(sample_id) in self._ids

    def deleted_ids(self) -> set[int]:
        return {int(i) for i in self.state.deleted_ids.tolist()}

    # -- changes -----------------------------------------------------------------------------
    def apply_deletions(self, sample_ids: list[int]) -> dict[str, Any]:
        """One downdate for the whole batch; validated first, so a failure changes nothing."""
        start = time.perf_counter()
        ids = torch.tensor(sample_ids, dtype=torch.long)
        self.state.positions(ids)
        samples = self.bundle.train.select_ids(sample_ids)
        delete_samples(self.trained.model, self.state, self.trained.initial_state, samples)
        self.served = self._build()
        self._version += 1
        return {
            "kind": receipt_kind("ntk_downdate", self.state),
            "approximate": self.state.approximate,
            "update": self.update,
            "samples": len(sample_ids),
            "rank": len(sample_ids) * self.state.rows_per_sample,
            "parameters": self.state.num_params,
            "seconds": round(time.perf_counter() - start, 4),
        }

    def pending_retrains(self) -> list[int]:
        return []

    def prepare_retrain(self, unit: int) -> RetrainJob:
        raise UnlearnkitError("approximate mode never retrains")

    def commit_retrain(self, ticket: Any) -> dict[str, Any]:
        raise UnlearnkitError("approximate mode never retrains")

    def retrain(self, unit: int) -> dict[str, Any]:
        raise UnlearnkitError("approximate mode never retrains")

    # -- state -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        deleted = int((~self.state.alive).sum())
        return {
            "update": self.update,
            "parameters": self.state.num_params,
            "lambda": self.state.lam,
            "target": self.state.fingerprint.get("target", "onehot"),
            "deleted_samples": deleted,
            "live_samples": int(self.state.alive.sum()),
            "remaining_capacity": {
                "theory": None,
                "simulated": None,
                "note": "no retraining ever; a downdate that would be "
                "numerically unstable is refused (status failed)",
            },
            "retrains_done": 0,
            "retrains_pending": [],
        }

    def clone(self) -> ApproximateServedModel:
        """Shares the read-only network, w0 and data; copies the state (what a snapshot saves)."""
        other = copy.copy(self)
        other.state = copy.deepcopy(self.state)
        return other

    def snapshot_copy(self) -> ApproximateServedModel:
        return self.clone()  # the state is small (a clone copies nothing else)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        # w_D - w0 is a function of the deleted samples: kept only for the paper update
        self.state.save(directory / STATE_FILE, keep_full=self.update == "paper")
        atomic_write_text(
            directory / RECORD_FILE,
            json.dumps(
                {
                    "format": "unlearnkit-approximate/1",
                    "version": self._version,
                    "update": self.update,
                    "deleted": int((~self.state.alive).sum()),
                }
            ),
        )

    def verify(self) -> None:
        """Loading already checked the files (fingerprints tie the state to w0 and the data)."""


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        int(record["version"]), int(record["deleted"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnlearnkitError(f"{path} is missing or corrupt ({exc}); refusing to start") from None
    return record
