"""Static mode: a model unlearned (or trained) offline, served as it is, never changed online.

``unlearnkit unlearn`` writes a model directory for every method (finetune, SCRUB, SalUn, ...);
those methods need the training data and minutes of work per request, so a deletion request
cannot be honoured inside the service. The service still serves the model, with the same auth,
limits and metrics, and answers a deletion with a clear 409 that says what to run instead;
nothing is written to the ledger for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.recipe import MODEL_FILE, load_trained, open_trained
from unlearnkit.recipe.store import saved_preprocessing
from unlearnkit.runtime.device import current_runtime
from unlearnkit.service.served import SERVED_MODELS, ModelView, RetrainJob

RECORD_FILE = "static.json"


@SERVED_MODELS.register("static")
class StaticServedModel:
    mode = "static"
    applies_immediately = True
    batches_deletions = False
    shares_modules = False
    in_place_changes: frozenset[str] = frozenset()
    deletes_online = False

    def __init__(
        self, model_dir: Path, snapshot_dir: Path | None = None, config: Any = None
    ) -> None:
        self.model_dir = Path(model_dir)
        trained, _, meta = load_trained(self.model_dir)
        # the record saved with the model; one saved before records existed: from its data
        self.preprocessing = saved_preprocessing(meta, self.model_dir) or (
            open_trained(self.model_dir).preprocessing
        )
        self.network: nn.Module = current_runtime().module(trained.model.eval())
        self.meta = meta
        self._shape = (int(meta["in_chans"]), int(meta["image_size"]), int(meta["image_size"]))
        self._classes = int(meta["num_classes"])
        self.refusal = (
            f"this model cannot delete online ({self.describe()}): run `unlearnkit unlearn "
            f"--from <its source model> --method ... --forget indices:FILE` and serve the result"
        )

    @classmethod
    def recognises(cls, directory: Path) -> bool:
        return (Path(directory) / MODEL_FILE).is_file()

    def describe(self) -> str:
        record = self.meta.get("unlearning")
        if isinstance(record, dict):
            return f"unlearned offline with {record.get('method')}"
        return "a trained model without an NTK state or ensemble"

    @property
    def version(self) -> int:
        return 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def num_classes(self) -> int:
        return self._classes

    def identity(self) -> dict[str, str]:
        return {"mode": self.mode, "data": str(self.meta.get("data_fingerprint", ""))}

    def view(self) -> ModelView:
        network = self.network

        def logits(x: torch.Tensor) -> torch.Tensor:
            runtime = current_runtime()  # the serving runtime: its device and autocast
            with torch.no_grad(), runtime.autocast():
                return runtime.to_cpu(network(runtime.tensor(x)).detach())

        return ModelView(0, logits)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.view().logits(x)

    def known(self, sample_id: int) -> bool:
        return False

    def deleted_ids(self) -> set[int]:
        return set()

    def apply_deletions(self, sample_ids: list[int]) -> dict[str, Any]:
        raise UnlearnkitError(self.refusal)

    def pending_retrains(self) -> list[int]:
        return []

    def prepare_retrain(self, unit: int) -> RetrainJob:
        raise UnlearnkitError("static mode never retrains")

    def commit_retrain(self, ticket: Any) -> dict[str, Any]:
        raise UnlearnkitError("static mode never retrains")

    def retrain(self, unit: int) -> dict[str, Any]:
        raise UnlearnkitError("static mode never retrains")

    def status(self) -> dict[str, Any]:
        record = self.meta.get("unlearning")
        return {
            "deletes_online": False,
            "served": self.describe(),
            "unlearning": None
            if not isinstance(record, dict)
            else {k: record.get(k) for k in ("method", "params", "n_forget", "parent")},
            "deleted_samples": 0,
            "retrains_done": 0,
            "retrains_pending": [],
        }

    def clone(self) -> StaticServedModel:
        return self  # never changes

    def snapshot_copy(self) -> StaticServedModel:
        return self

    def save(self, directory: Path) -> None:
        atomic_write_text(
            Path(directory) / RECORD_FILE, json.dumps({"format": "unlearnkit-static/1"})
        )

    def verify(self) -> None:
        """Loading already read every file (a damaged one failed there)."""
