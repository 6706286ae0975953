"""``--subset N``: the flag reaches the data layer through the config, and is kept with it."""

from __future__ import annotations

from unlearnkit.cli.common import make_config
from unlearnkit.recipe import load_bundle


def test_subset_flag_becomes_a_dataset_option_and_shrinks_the_pool() -> None:
    whole = load_bundle(make_config(None))
    cfg = make_config({"dataset_options": {}}, subset=300)
    assert cfg.dataset_options == {"subset": 300}
    bundle = load_bundle(cfg)
    pool = len(bundle.train) + len(bundle.public)
    assert pool == 300 < len(whole.train) + len(whole.public)
    assert len(bundle.test) == len(whole.test)  # the test set stays whole


def test_subset_keeps_other_dataset_options() -> None:
    cfg = make_config(
        {"dataset": "noisy", "dataset_options": {"base": "digits", "label_noise": 0.1}}, subset=200
    )
    assert cfg.dataset_options == {"base": "digits", "label_noise": 0.1, "subset": 200}
    assert len(load_bundle(cfg).train) + len(load_bundle(cfg).public) == 200
