"""An ensemble's training data, named instead of stored: the data set and how to reload it.

A saved ensemble keeps the ids of its live samples and, in its ``meta``, the reference its
recipe recorded (data set name, folder, public split, data set options, and the fingerprint of
the training split). Loading re-reads the data set from that reference and refuses data whose
fingerprint differs, so no pixel of any sample, deleted or not, is written into a save.
"""

from __future__ import annotations

from typing import Any

from unlearnkit.data import DatasetBundle, load_dataset
from unlearnkit.errors import UnlearnkitError

# the meta keys that make a reference (written by ``recipe.recipe_meta``)
REFERENCE_KEYS = ("dataset", "data_dir", "public_fraction", "dataset_options", "train_fingerprint")


def has_reference(meta: dict[str, Any]) -> bool:
    """Can the training data be reloaded from ``meta`` (a data set name and its fingerprint)?"""
    return bool(meta.get("dataset")) and bool(meta.get("train_fingerprint"))


def referenced_data(meta: dict[str, Any]) -> DatasetBundle:
    """The data set an ensemble was trained on (from its meta), checked by fingerprint."""
    if "dataset" not in meta:
        raise UnlearnkitError("this ensemble records no data set; evaluate it from Python")
    bundle = load_dataset(
        meta["dataset"],
        meta.get("data_dir"),
        seed=0,
        public_fraction=meta["public_fraction"],
        **meta.get("dataset_options", {}),
    )
    if bundle.train.fingerprint() != meta.get("train_fingerprint"):
        if "preprocessing" not in meta and bundle.public is None:
            raise UnlearnkitError(
                "this ensemble was saved before ensembles recorded their preprocessing, and "
                "its normalisation came from all of D (no public split), which this version "
                "never does; train it again"
            )
        where = f" in {meta['data_dir']}" if meta.get("data_dir") else ""
        raise UnlearnkitError(
            f"data set {meta['dataset']!r}{where} differs from the one this ensemble was "
            "trained on (fingerprint mismatch); put back the data it was trained on"
        )
    return bundle
