"""The training recipe: how the model every engine works on is made, saved and opened again.

Below every engine (methods, NTK, memorization, exact, service), above data / models / training.
"""

from __future__ import annotations

from unlearnkit.recipe.build import (
    TrainedModel,
    load_bundle,
    sized_for,
    starting_model,
    train_original,
)
from unlearnkit.recipe.config import RecipeConfig, check_name, recipe_of
from unlearnkit.recipe.store import (
    INITIAL_FILE,
    MODEL_FILE,
    OpenedModel,
    check_fingerprint,
    load_trained,
    open_trained,
    save_trained,
)

__all__ = [
    "INITIAL_FILE",
    "MODEL_FILE",
    "OpenedModel",
    "RecipeConfig",
    "TrainedModel",
    "check_fingerprint",
    "check_name",
    "load_bundle",
    "load_trained",
    "open_trained",
    "recipe_of",
    "save_trained",
    "sized_for",
    "starting_model",
    "train_original",
]
