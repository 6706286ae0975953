"""Approximate mode on a state with scaled targets: the deletion's residuals use the state's
own targets, so the served model equals the scaled linearized model solved from scratch on the
remaining data, on a cross-entropy logit scale."""

from __future__ import annotations

import shutil

import torch

from unlearnkit.ntk.incremental import precompute_state
from unlearnkit.ntk.update import linearized_model
from unlearnkit.recipe import load_bundle, load_trained
from unlearnkit.service.approximate import STATE_FILE, ApproximateServedModel


def test_scaled_state_is_served_and_downdated_exactly(ntk_base, tmp_path):
    model_dir = shutil.copytree(ntk_base, tmp_path / "scaled")
    trained, cfg, _ = load_trained(model_dir)
    bundle = load_bundle(cfg)

    def state_on(split, target_scale=10.0):
        return precompute_state(
            trained.model,
            trained.trainable,
            trained.initial_state,
            split,
            bundle.num_classes,
            0.5,
            data_fingerprint=bundle.train.fingerprint(),
            target_scale=target_scale,
        )

    state_on(bundle.train).save(model_dir / STATE_FILE)
    served = ApproximateServedModel(model_dir)
    assert served.status()["target"] == "scaled:10.0"
    victims = bundle.train.ids[[2, 40, 71]].tolist()
    served.apply_deletions(victims)
    scratch = linearized_model(
        trained.model,
        trained.trainable,
        trained.initial_state,
        state_on(bundle.train.drop_ids(victims)).solution,
    )
    x = bundle.test.x[:16]
    with torch.no_grad():
        expect = scratch(x)
    got = served.predict_logits(x)
    torch.testing.assert_close(got, expect, atol=1e-4, rtol=1e-4)
    onehot = linearized_model(
        trained.model,
        trained.trainable,
        trained.initial_state,
        state_on(bundle.train.drop_ids(victims), None).solution,
    )
    with torch.no_grad():  # logits spread wider than the one-hot fit's 0-1 scale
        assert float(expect.std(1).mean()) > 3 * float(onehot(x).std(1).mean())
