"""The user's path on real architectures, each built by the library that defines it (random
init, 32 px synthetic images): train -> every default method (fast_ntk included, in `norm` or
`prompts` mode) against retrain -> save / load -> a prediction over HTTP of the saved model ->
S3T train, delete and predict. Small sizes so the whole matrix runs on 2 CPU cores."""

from __future__ import annotations

import math

import pytest
import torch
from fastapi.testclient import TestClient

from unlearnkit.config import ExperimentConfig
from unlearnkit.exact import S3TConfig, S3TEnsemble
from unlearnkit.experiment import run_experiment
from unlearnkit.methods import default_method_names
from unlearnkit.recipe import load_bundle, load_trained, save_trained, train_original
from unlearnkit.service import DeletionService, ServiceConfig, TokenStore
from unlearnkit.service.app import create_app
from unlearnkit.service.auth import TokenSpec
from unlearnkit.training import TrainConfig

pytestmark = pytest.mark.slow

ARCHITECTURES = {  # name -> (trainable mode for the methods and Fast-NTK, model options)
    "timm:resnet18": ("norm", {}),
    "timm:efficientnet_b0": ("norm", {}),
    "timm:convnext_atto": ("norm", {}),
    "timm:vit_tiny_patch16_224": ("norm", {"patch_size": 8}),
    "torchvision:resnet18": ("norm", {}),
    "torchvision:mobilenet_v3_small": ("norm", {}),
}
DATA = {"n_train": 80, "n_test": 40, "image_size": 32, "num_classes": 4, "channels": 3}
TOKEN = "matrix-token-0123456789"


def config(model: str, peft: str, options: dict) -> ExperimentConfig:
    return ExperimentConfig(
        dataset="synthetic",
        dataset_options=DATA,
        model=model,
        model_options=options,
        peft=peft,
        pretrain=False,
        train=TrainConfig(epochs=1, batch_size=16),
        methods=default_method_names(),
        # few epochs each: the matrix checks that every method runs on every architecture
        method_params={name: {"epochs": 1} for name in ("finetune", "neggrad", "neggrad_plus",
                       "random_label", "l1_sparse", "salun", "scrub")},
        forget="random:8",
        relearn_max_epochs=1,
        # the dual solve: an (N C) x (N C) kernel, not the P x P Gram of a big norm set
        # (EfficientNet-B0's would be 24 GB)
    )  # fmt: skip


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_the_users_path_on_a_real_architecture(tmp_path, model) -> None:
    peft, options = ARCHITECTURES[model]
    cfg = config(model, peft, options)
    cfg.method_params["fast_ntk"] = {"solver": "dual", "chunk_size": 8}
    bundle = load_bundle(cfg)
    original = train_original(cfg, bundle, seed=0)
    results = run_experiment(cfg, bundle=bundle, original=original)
    ran = [r["method"] for r in results["runs"]]
    assert set(default_method_names()) <= set(ran)
    for row in results["runs"]:
        assert all(math.isfinite(v) for v in row["acc"].values()), row["method"]

    save_trained(tmp_path / "model", original, cfg, bundle)
    reloaded = load_trained(tmp_path / "model")[0].model.eval()
    x = bundle.test.x[:6]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), original.model.eval()(x))
    service = DeletionService(ServiceConfig(model_dir=tmp_path / "model", mode="static"))
    service.start()
    try:
        tokens = TokenStore([TokenSpec(name="me", token=TOKEN, scopes=["admin"])])
        with TestClient(create_app(service, tokens)) as client:
            pixels = bundle.preprocessing.to_uint8(x)
            sent = (pixels.float() / 255.0).tolist()
            answer = client.post(
                "/v1/predict", json={"inputs": sent}, headers={"Authorization": f"Bearer {TOKEN}"}
            )
        assert answer.status_code == 200, answer.text
        with torch.no_grad():
            want = reloaded(bundle.preprocessing.from_uint8(pixels)).argmax(1).tolist()
        assert answer.json()["predictions"] == want
    finally:
        service.close()

    s3t = S3TConfig(
        model=model, model_options=options, num_shards=2, num_slices=2, num_sequences=2,
        lora_rank=2, train=TrainConfig(epochs=1, batch_size=16), retrain_policy="manual",
    )  # fmt: skip
    ensemble = S3TEnsemble.train(
        bundle.train,
        s3t,
        num_classes=bundle.num_classes,
        backbone_state=original.model.state_dict(),
    )
    victim = int(bundle.train.ids[0])
    before = ensemble.predict_logits(x)
    receipts = ensemble.delete([victim])
    after = ensemble.predict_logits(x)
    assert receipts and before.shape == after.shape == (6, bundle.num_classes)
    assert torch.isfinite(after).all()
    assert victim in ensemble.partition.deleted
