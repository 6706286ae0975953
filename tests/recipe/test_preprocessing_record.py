"""A trained model directory carries its preprocessing record; one saved before records existed
gets it derived from its data the old way, or is refused clearly when that cannot be exact."""

from __future__ import annotations

import json

import pytest

from unlearnkit.errors import ConflictError
from unlearnkit.recipe import MODEL_FILE, open_trained


def _edit_meta(directory, change) -> None:
    path = directory / f"{MODEL_FILE}.json"
    meta = json.loads(path.read_text())
    change(meta.get("metadata", meta))
    path.write_text(json.dumps(meta))


def test_record_is_saved_and_read_back(tmp_path, save_tiny_trained):
    _, bundle = save_tiny_trained(tmp_path)
    opened = open_trained(tmp_path)
    assert opened.preprocessing == bundle.preprocessing
    assert opened.preprocessing.stats == "fixed constants for digits"  # no public split


def test_a_directory_without_a_record_derives_it_the_old_way(tmp_path, save_tiny_trained):
    _, bundle = save_tiny_trained(tmp_path)
    _edit_meta(tmp_path, lambda meta: meta.pop("preprocessing"))
    assert open_trained(tmp_path).preprocessing == bundle.preprocessing


def test_old_normalisation_from_all_of_d_is_refused_clearly(tmp_path, save_tiny_trained):
    save_tiny_trained(tmp_path)

    def old(meta) -> None:  # what an old save on the pool statistics of D looks like
        meta.pop("preprocessing")
        meta["data_fingerprint"] = "digits-0123456789abcdef"

    _edit_meta(tmp_path, old)
    with pytest.raises(ConflictError, match="saved before models recorded their preprocessing"):
        open_trained(tmp_path)


def test_a_record_that_disagrees_with_the_data_is_refused(tmp_path, save_tiny_trained):
    save_tiny_trained(tmp_path)

    def other(meta) -> None:
        meta["preprocessing"] = {**meta["preprocessing"], "mean": [0.5]}

    _edit_meta(tmp_path, other)
    with pytest.raises(ConflictError, match="other preprocessing"):
        open_trained(tmp_path)
