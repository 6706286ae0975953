"""How an ensemble is made from a data set name: the one recipe the CLI and the benchmark use.

1. The data: the data set, with a disjoint public split carved out when the backbone pretrains.
2. The frozen backbone: loaded from ``weights``, pretrained on the public split, or random.
3. The ownership map, the sequences and the blocks: :meth:`ShardedEnsemble.train`.

Everything that can fail on bad input (names, files, a shape too large for the data, a model
with nothing to adapt) fails in :func:`check_ensemble`, before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unlearnkit.data import DATASETS, DatasetBundle, load_dataset
from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.backbone import file_backbone, pretrained_backbone, random_backbone
from unlearnkit.exact.config import ShardedConfig
from unlearnkit.exact.data_ref import referenced_data
from unlearnkit.exact.ensemble import ENSEMBLES, ShardedEnsemble
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.stack import StackSpec, check_blocks
from unlearnkit.recipe.presets import ensemble_preset
from unlearnkit.runtime import Executor
from unlearnkit.training import TrainConfig

BackboneSource = Literal["file", "public", "random"]


class EnsembleRecipe(BaseModel):
    """Where an ensemble's data and backbone come from (its shape is its scheme's config)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "digits"
    data_dir: str | None = None
    pretrain: bool = Field(True, description="pretrain the backbone on the public split")
    public_fraction: float = Field(0.3, ge=0, lt=1, description="share of the pool kept public")
    weights: str | None = Field(None, description="local backbone checkpoint (no pretraining)")
    weights_skip_head: bool = Field(
        False, description="load ``weights`` without its head (a backbone for a new label set)"
    )
    dataset_options: dict[str, Any] = Field(
        default_factory=dict, description="the data set's own options (e.g. image_size)"
    )
    pretrain_config: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=20))

    @model_validator(mode="before")
    @classmethod
    def _dataset_preset(cls, data: Any) -> Any:
        """A data set's preset pretraining recipe (``recipe/presets.py``), unless one is given."""
        if isinstance(data, dict) and "pretrain_config" not in data:
            preset = ensemble_preset(str(data.get("dataset", "digits")), "pretrain_config")
            if preset:
                return {**data, "pretrain_config": preset}
        return data

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        DATASETS.get(v)  # raises with the list of valid names
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise UnlearnkitError(f"{v}: no such file")
        return v

    @model_validator(mode="after")
    def _skip_head_needs_weights(self) -> EnsembleRecipe:
        if self.weights_skip_head and self.weights is None:
            raise ValueError("weights_skip_head needs weights (a checkpoint file)")
        return self

    @property
    def backbone(self) -> BackboneSource:
        if self.weights is not None:
            return "file"
        return "public" if self.pretrain and self.public_fraction > 0 else "random"


def ensemble_class(config: ShardedConfig) -> type[ShardedEnsemble]:
    """The scheme a config belongs to (``S3TConfig`` -> ``S3TEnsemble``)."""
    for name in ENSEMBLES.names():
        cls = ENSEMBLES.get(name)
        if type(config) is cls.config_type:  # type: ignore[attr-defined]
            return cls  # type: ignore[return-value]
    raise UnlearnkitError(f"no ensemble scheme takes a {type(config).__name__}")


def load_data(recipe: EnsembleRecipe) -> DatasetBundle:
    """The data set, with the public split carved out only when the backbone pretrains on it."""
    public = recipe.public_fraction if recipe.backbone == "public" else 0.0
    return load_dataset(
        recipe.dataset, recipe.data_dir, seed=0, public_fraction=public, **recipe.dataset_options
    )


def stack_spec(config: ShardedConfig, bundle: DatasetBundle) -> StackSpec:
    """The architecture the config names, shaped for the data, plus the config's LoRA."""
    return StackSpec(
        config.model,
        bundle.num_classes,
        bundle.in_chans,
        bundle.image_size,
        dict(config.model_options),
        config.lora_rank,
        config.lora_alpha,
        tuple(config.lora_targets),
        tuple(config.lora_layers),
        config.adapt,
    )


def check_ensemble(config: ShardedConfig, bundle: DatasetBundle) -> StackSpec:
    """Fail now, not after training: a shape the data cannot fill, a model with nothing to
    adapt, an unknown model. Returns the stack spec."""
    cls = ensemble_class(config)
    Partition.create(bundle.train.ids, config.num_shards, config.num_slices, config.seed)
    spec = stack_spec(config, bundle)
    check_blocks(spec, cls.scheme, config.num_slices)
    return spec


def make_backbone(
    recipe: EnsembleRecipe,
    spec: StackSpec,
    bundle: DatasetBundle,
    seed: int,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The frozen backbone the recipe asks for (pretraining can take a while: ``log`` says so)."""
    if recipe.backbone == "file":
        return file_backbone(spec, recipe.weights, recipe.weights_skip_head)  # type: ignore[arg-type]
    if recipe.backbone == "public" and bundle.public is not None:
        if log is not None:
            log(f"pretraining the backbone on {len(bundle.public)} public samples")
        return pretrained_backbone(spec, bundle.public, recipe.pretrain_config, seed)
    return random_backbone(spec, seed)


def recipe_meta(recipe: EnsembleRecipe, bundle: DatasetBundle) -> dict[str, Any]:
    """What an ensemble records about its data, so it can be evaluated on the same data later."""
    return {
        "dataset": recipe.dataset,
        "data_dir": recipe.data_dir,
        "public_fraction": recipe.public_fraction if recipe.backbone == "public" else 0.0,
        "train_fingerprint": bundle.train.fingerprint(),
        "backbone": recipe.weights if recipe.backbone == "file" else recipe.backbone,
        "dataset_options": dict(recipe.dataset_options),
        "skipped_images": len(bundle.skipped),
        "preprocessing": bundle.preprocessing.to_json() if bundle.preprocessing else None,
    }


def build_ensemble(
    recipe: EnsembleRecipe,
    config: ShardedConfig,
    executor: Executor | None = None,
    *,
    bundle: DatasetBundle | None = None,
    backbone: dict[str, Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> ShardedEnsemble:
    """Data, backbone and ensemble, checked first. ``bundle`` and ``backbone`` reuse ones built
    before (several ensembles on one backbone); shards train on ``executor``."""
    bundle = load_data(recipe) if bundle is None else bundle
    spec = check_ensemble(config, bundle)
    if backbone is None:
        backbone = make_backbone(recipe, spec, bundle, config.seed, log)
    return ensemble_class(config).train(
        bundle.train,
        config,
        executor,
        num_classes=bundle.num_classes,
        backbone_state=backbone,
        meta=recipe_meta(recipe, bundle),
    )


def ensemble_data(meta: dict[str, Any]) -> DatasetBundle:
    """The data set an ensemble was trained on (from its meta), checked by fingerprint."""
    return referenced_data(meta)


def ensemble_preprocessing(meta: dict[str, Any], spec: StackSpec) -> Preprocessing:
    """How pixels become an ensemble's inputs: its saved record; for one saved before records
    existed, derived the old way from its (fingerprint-checked) data; for one trained from
    Python on arrays with no data set named, none: its inputs are used as given."""
    record = meta.get("preprocessing")
    if record is not None:
        return Preprocessing.from_json(record, "ensemble preprocessing record")
    if "dataset" in meta:
        bundle = ensemble_data(meta)
        if bundle.preprocessing is not None:
            return bundle.preprocessing
    return Preprocessing.identity(int(spec.in_chans), int(spec.image_size))
