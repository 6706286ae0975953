"""Train/serve parity: every digits test image, sent to a running service as a PNG and as an
array, gets exactly the class (and the probabilities to 1e-5) that in-process evaluation of
the same 8-bit image gives, for a plain trained model and for an S3T ensemble.

PNG holds 8-bit pixels, so the in-process reference is built from the same uint8 images
(through the model's saved preprocessing record); only then can equality be exact.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
import torch
from service_helpers import PREDICT, auth, running_server, start_service

from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.service.app import create_app
from unlearnkit.training import TrainConfig

CHUNK = 120  # images per request (under the default max_batch)


def _png(pixels: torch.Tensor) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[0].numpy(), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _served(model_dir: Path, tokens, pixels: torch.Tensor, **config) -> dict[str, torch.Tensor]:
    """Probabilities and classes from a real uvicorn server, for PNGs and for [0, 1] arrays."""
    service = start_service(model_dir, **config)
    out: dict[str, list] = {"png_p": [], "png_c": [], "arr_p": [], "arr_c": []}
    try:
        with (
            running_server(create_app(service, tokens)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            model = client.get("/v1/model", headers=auth(PREDICT)).json()
            for start in range(0, len(pixels), CHUNK):
                part = pixels[start : start + CHUNK]
                bodies = {
                    "png": {"images": [_png(p) for p in part]},
                    "arr": {"inputs": (part.float() / 255.0).tolist()},
                }
                for kind, body in bodies.items():
                    r = client.post("/v1/predict", json=body, headers=auth(PREDICT))
                    assert r.status_code == 200, r.text
                    out[f"{kind}_p"].append(torch.tensor(r.json()["probabilities"]))
                    out[f"{kind}_c"].append(torch.tensor(r.json()["predictions"]))
    finally:
        service.close()
    result = {k: torch.cat(v) for k, v in out.items()}
    result["record"] = model["preprocessing"]
    return result


def _check(served: dict, logits: torch.Tensor) -> None:
    classes, probs = logits.argmax(1), torch.softmax(logits, dim=1)
    for kind in ("png", "arr"):
        assert torch.equal(served[f"{kind}_c"], classes), kind
        torch.testing.assert_close(served[f"{kind}_p"], probs, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def digits_8bit():
    """Digits with its public split, and its test images as the nearest 8-bit pixels."""
    from unlearnkit.data import load_dataset

    bundle = load_dataset("digits", public_fraction=0.3, test_fraction=0.2)
    pixels = bundle.preprocessing.to_uint8(bundle.test.x)
    return bundle, pixels


def test_preprocessing_of_8bit_images_is_the_training_preprocessing(digits_8bit):
    """The record turns 8-bit images into what training saw (up to the 8-bit rounding); raw
    [0, 1] pixels, what the service used to feed the model, are far from it."""
    bundle, pixels = digits_8bit
    prep = bundle.preprocessing
    step = 0.5 / 255 / min(prep.std) + 1e-6
    assert float((prep.from_uint8(pixels) - bundle.test.x).abs().max()) <= step
    assert float((pixels.float() / 255 - bundle.test.x).abs().max()) > 0.5
    assert Preprocessing.from_json(prep.to_json()) == prep


def test_plain_trained_model_served_equals_in_process(tmp_path, tokens, digits_8bit):
    from unlearnkit.ntk.incremental import precompute_state
    from unlearnkit.recipe import RecipeConfig, open_trained, save_trained, train_original
    from unlearnkit.service.approximate import STATE_FILE

    bundle, pixels = digits_8bit
    cfg = RecipeConfig(
        model_options={"width": 4},
        pretrain_config=TrainConfig(epochs=1),
        train=TrainConfig(epochs=1),
        dataset_options={"test_fraction": 0.2},
    )
    trained = train_original(cfg, bundle, 0)
    save_trained(tmp_path, trained, cfg, bundle)
    opened = open_trained(tmp_path)
    assert opened.preprocessing == bundle.preprocessing  # saved with the model, read back
    state = precompute_state(
        trained.model,
        trained.trainable,
        trained.initial_state,
        bundle.train,
        bundle.num_classes,
        0.5,
        data_fingerprint=bundle.train.fingerprint(),
    )
    state.save(tmp_path / STATE_FILE)
    # in-process evaluation of the same 8-bit images through the saved record
    model = opened.trained.model.eval()
    with torch.no_grad():
        logits = model(opened.preprocessing.from_uint8(pixels))
    # "paper" serves the trained network itself until a deletion arrives
    served = _served(tmp_path, tokens, pixels, mode="approximate", ntk_update="paper")
    assert served["record"] == bundle.preprocessing.to_json()
    _check(served, logits)


def test_s3t_ensemble_served_equals_in_process(tmp_path, tokens, digits_8bit):
    from unlearnkit.exact import EnsembleRecipe, S3TConfig, S3TEnsemble, build_ensemble

    bundle, pixels = digits_8bit
    recipe = EnsembleRecipe(
        pretrain_config=TrainConfig(epochs=1), dataset_options={"test_fraction": 0.2}
    )
    config = S3TConfig(
        num_shards=2,
        num_slices=2,
        num_sequences=2,
        lora_rank=2,
        model_options={"width": 8},
        train=TrainConfig(epochs=1, lr=0.05, batch_size=32),
        retrain_policy="manual",
    )
    build_ensemble(recipe, config, bundle=bundle).save(tmp_path)
    ensemble = S3TEnsemble.load(tmp_path)
    assert ensemble.meta["preprocessing"] == bundle.preprocessing.to_json()
    logits = ensemble.predict_logits(bundle.preprocessing.from_uint8(pixels))
    served = _served(tmp_path, tokens, pixels)
    _check(served, logits)
