"""Static mode: any saved model (e.g. one unlearned offline with SalUn) is served as it is; a
deletion is refused with a 409 that says what to run, and nothing is recorded."""

from __future__ import annotations

import shutil

import pytest
import torch
from service_helpers import ADMIN, auth, pixel_inputs

from unlearnkit.errors import UnlearnkitError
from unlearnkit.recipe import load_trained, open_trained
from unlearnkit.service import detect_mode


@pytest.fixture
def static_dir(tmp_path, ntk_base):
    """The approximate fixture's model directory without its NTK state: plain saved weights."""
    out = shutil.copytree(ntk_base, tmp_path / "static")
    (out / "ntk_state.safetensors").unlink()
    return out


def test_auto_mode_follows_the_files(tmp_path, static_dir, ntk_base, s3t_base) -> None:
    assert detect_mode(s3t_base) == "exact"
    assert detect_mode(ntk_base) == "approximate"
    assert detect_mode(static_dir) == "static"
    with pytest.raises(UnlearnkitError, match="holds no servable model"):
        detect_mode(tmp_path)


def test_static_model_serves_its_weights_and_refuses_deletions(serve, static_dir) -> None:
    model = load_trained(static_dir)[0].model.eval()
    bundle = open_trained(static_dir).bundle
    x, sent = pixel_inputs(bundle.preprocessing, bundle.test.x[:5])  # inputs are pixels
    with serve(static_dir, mode="static") as client:
        answer = client.post("/v1/predict", json={"inputs": sent}, headers=auth(ADMIN))
        assert answer.status_code == 200, answer.text
        with torch.no_grad():
            want = model(x).argmax(1).tolist()
        assert answer.json()["predictions"] == want
        refused = client.post(
            "/v1/deletions", json={"sample_ids": [1]}, headers=auth(ADMIN, key="k-1")
        )
        assert refused.status_code == 409
        assert "cannot delete online" in refused.json()["error"]["message"]
        assert "unlearnkit unlearn" in refused.json()["error"]["message"]
        assert client.service.ledger.last_seq() == 0  # nothing recorded
        status = client.get("/v1/model", headers=auth(ADMIN)).json()
        assert status["deletes_online"] is False
