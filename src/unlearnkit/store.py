"""A trained model on disk: weights, its starting point w0, and how it was made.

``DIR/model.safetensors`` (weights after training on D), ``DIR/initial.safetensors`` (w0, needed
by retrain and by NTK linearisation) and ``DIR/model.safetensors.json`` (config, trainable
names, data fingerprint, versions). Loading checks the data fingerprint, so a model is never
unlearned against data it was not trained on.
"""

from __future__ import annotations

from pathlib import Path

from unlearnkit.config import ExperimentConfig, build_config
from unlearnkit.data import DatasetBundle
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.experiment import TrainedModel
from unlearnkit.models import create_model, select_trainable
from unlearnkit.models.checkpoint import load_checkpoint, load_state, save_checkpoint, save_state

MODEL_FILE, INITIAL_FILE = "model.safetensors", "initial.safetensors"


def save_trained(
    directory: Path, trained: TrainedModel, cfg: ExperimentConfig, bundle: DatasetBundle
) -> None:
    directory = Path(directory)
    save_state(directory / INITIAL_FILE, trained.initial_state, {"role": "initial"})
    save_checkpoint(
        directory / MODEL_FILE,
        trained.model,
        {
            "config": cfg.model_dump(mode="json"),
            "seed": trained.seed,
            "trainable": trained.trainable,
            "data_fingerprint": bundle.fingerprint,
            "num_classes": bundle.num_classes,
            "in_chans": bundle.in_chans,
            "image_size": bundle.image_size,
        },
    )


def load_trained(directory: Path) -> tuple[TrainedModel, ExperimentConfig, dict]:
    """Read what ``save_trained`` wrote; a missing or corrupt file is a clear error."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise UnlearnkitError(
            f"{directory} holds no trained model ({MODEL_FILE}); "
            "run `unlearnkit train --out DIR` first"
        )
    _, meta = load_state(directory / MODEL_FILE)
    try:
        cfg = build_config(meta["config"])
        model = create_model(
            cfg.model,
            meta["num_classes"],
            meta["in_chans"],
            meta["image_size"],
            **cfg.model_options,
        )
        trainable = select_trainable(model, cfg.peft)
        if trainable != meta["trainable"]:
            raise ConflictError(f"{directory}: trainable parameters differ from the saved ones")
    except KeyError as exc:
        raise UnlearnkitError(f"{directory / MODEL_FILE}.json lacks {exc}") from None
    initial, _ = load_state(directory / INITIAL_FILE)
    load_checkpoint(directory / MODEL_FILE, model)
    return TrainedModel(model, initial, trainable, int(meta.get("seed", 0))), cfg, meta


def check_fingerprint(meta: dict, bundle: DatasetBundle, directory: Path) -> None:
    if meta.get("data_fingerprint") != bundle.fingerprint:
        raise ConflictError(
            f"{directory} was trained on other data (fingerprint "
            f"{meta.get('data_fingerprint')} != {bundle.fingerprint})"
        )
