"""A trained model on disk: weights, its starting point w0, and how it was made.

``DIR/model.safetensors`` (weights after training on D), ``DIR/initial.safetensors`` (w0, needed
by retrain and by NTK linearisation) and ``DIR/model.safetensors.json`` (recipe, trainable
names, data fingerprint, the preprocessing record, versions); for an image folder also
``DIR/manifest.csv`` (every file, its id or part, size, mtime, content hash). ``open_trained``
loads the model *and* its data and checks the fingerprint (a changed image folder: the file
named first), so a model is never unlearned against data it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.data import DatasetBundle
from unlearnkit.data.imagefolder import check_folder
from unlearnkit.data.manifest import MANIFEST_FILE, Manifest
from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.models import create_model, select_trainable
from unlearnkit.models.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    load_state,
    save_checkpoint,
    save_state,
)
from unlearnkit.recipe.build import TrainedModel, load_bundle, sized_for
from unlearnkit.recipe.config import RecipeConfig, recipe_of

MODEL_FILE, INITIAL_FILE = "model.safetensors", "initial.safetensors"


def save_trained(
    directory: Path, trained: TrainedModel, cfg: RecipeConfig, bundle: DatasetBundle
) -> None:
    directory = Path(directory)
    cfg = sized_for(cfg, bundle)  # the epochs it was trained with, and what they were sized for
    recipe = cfg.model_dump(mode="json", include=set(RecipeConfig.model_fields))
    save_state(directory / INITIAL_FILE, trained.initial_state, {"role": "initial"})
    if bundle.manifest is not None:  # which file is which sample, checked when reopened
        atomic_write_text(directory / MANIFEST_FILE, bundle.manifest.to_csv())
    save_checkpoint(
        directory / MODEL_FILE,
        trained.model,
        {
            "config": recipe,
            "seed": trained.seed,
            "trainable": trained.trainable,
            "data_fingerprint": bundle.fingerprint,
            "num_classes": bundle.num_classes,
            "in_chans": bundle.in_chans,
            "image_size": bundle.image_size,
            "preprocessing": preprocessing_of(bundle).to_json(),
            "skipped_images": len(bundle.skipped),
        },
    )


def preprocessing_of(bundle: DatasetBundle) -> Preprocessing:
    """The bundle's record (a hand-built bundle without one: its inputs are used as given)."""
    if bundle.preprocessing is not None:
        return bundle.preprocessing
    return Preprocessing.identity(bundle.in_chans, bundle.image_size)


def saved_preprocessing(meta: dict[str, Any], where: Path) -> Preprocessing | None:
    """The record a model directory carries; None for one saved before records existed."""
    if "preprocessing" not in meta:
        return None
    return Preprocessing.from_json(meta["preprocessing"], f"{where}: preprocessing record")


def load_trained(directory: Path) -> tuple[TrainedModel, RecipeConfig, dict[str, Any]]:
    """Read what ``save_trained`` wrote; a missing or corrupt file is a clear error."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise UnlearnkitError(
            f"{directory} holds no trained model ({MODEL_FILE}); "
            "run `unlearnkit train --out DIR` first"
        )
    _, meta = load_state(directory / MODEL_FILE)
    try:
        cfg = recipe_of(meta["config"])
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


def check_fingerprint(meta: dict[str, Any], bundle: DatasetBundle, directory: Path) -> None:
    if meta.get("data_fingerprint") != bundle.fingerprint:
        if "preprocessing" not in meta and bundle.public is None:
            raise ConflictError(
                f"{directory} was saved before models recorded their preprocessing, and its "
                "normalisation came from all of D (no public split), which this version never "
                "does; retrain it (`unlearnkit train`)"
            )
        raise ConflictError(
            f"{directory} was trained on other data (fingerprint "
            f"{meta.get('data_fingerprint')} != {bundle.fingerprint})"
        )
    saved = saved_preprocessing(meta, directory)
    if saved is not None and saved != preprocessing_of(bundle):
        raise ConflictError(
            f"{directory} was trained with other preprocessing than its data set gives now "
            f"({saved.stats} vs {preprocessing_of(bundle).stats})"
        )


@dataclass
class OpenedModel:
    """A trained model directory, its recipe and the data it was trained on (checked)."""

    trained: TrainedModel
    recipe: RecipeConfig
    bundle: DatasetBundle
    meta: dict[str, Any]

    @property
    def preprocessing(self) -> Preprocessing:
        """How pixels become this model's inputs: the saved record, or for a directory saved
        before records existed, derived from its (fingerprint-checked) data the old way."""
        return saved_preprocessing(self.meta, Path(".")) or preprocessing_of(self.bundle)


def open_trained(
    directory: Path, data_dir: str | None = None, verify_content: bool = False
) -> OpenedModel:
    """Load a trained model and its data set, refusing data other than what it was trained on.

    ``data_dir`` points at the same data in another folder (the fingerprint still decides).
    An image folder is checked against the saved manifest with a stat per file, and its files
    whose size and mtime are as recorded are not read again; ``verify_content`` reads and
    hashes every file (the deep check).
    """
    trained, cfg, meta = load_trained(directory)
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data_dir": data_dir})
    path = Path(directory) / MANIFEST_FILE
    known = None
    if path.is_file() and cfg.data_dir:  # a changed folder is named before any decoding
        known = Manifest.read(path)
        check_folder(Path(cfg.data_dir).expanduser(), known, verify_content)
    bundle = load_bundle(cfg, known)
    check_fingerprint(meta, bundle, Path(directory))
    return OpenedModel(trained, cfg, bundle, meta)
