"""smallcnn at Fashion-MNIST's 28x28, and unchanged at digits' 8x8."""

from __future__ import annotations

import hashlib

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import count_parameters, create_model, select_trainable

# sha256 (first 16 hex digits) over the names and bytes of the seeded initial state_dict,
# computed with the 8x8 smallcnn as it was before the 28x28 layout was added
SEEDED_8X8_INIT = {
    (32, 0): "ce53a31eaf740b8a",
    (32, 1): "c341fadb5bb96655",
    (4, 0): "84f7e6e42cd8c1e6",  # the width of the shared tiny-model fixture
}


def _state_checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("width, seed", sorted(SEEDED_8X8_INIT))
def test_8x8_model_is_bit_identical_to_before(width, seed):
    torch.manual_seed(seed)
    model = create_model("smallcnn", 10, 1, 8, width=width)
    assert _state_checksum(model) == SEEDED_8X8_INIT[(width, seed)]


def test_8x8_parameter_counts_are_unchanged():
    model = create_model("smallcnn", 10, 1, 8)
    assert count_parameters(model, select_trainable(model, "bn")) == (970, 56_714)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_28x28_forward_and_parameter_counts():
    model = create_model("smallcnn", 10, 1, 28)
    assert count_parameters(model, select_trainable(model, "bn")) == (1_866, 131_466)
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 2  # 28 -> 14 -> 7 before the global average pool


@pytest.mark.parametrize("size, pools", [(16, 1), (32, 2), (64, 3)])
def test_larger_inputs_are_pooled_down(size, pools):
    model = create_model("smallcnn", 5, 3, size, width=8).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 5)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == pools


def test_width_scales_the_28x28_model():
    narrow = create_model("smallcnn", 10, 1, 28, width=8)
    wide = create_model("smallcnn", 10, 1, 28, width=64)
    total = [sum(p.numel() for p in m.parameters()) for m in (narrow, wide)]
    assert total[0] < 131_466 < total[1] == 520_970
    assert wide.get_classifier().in_features == 256
    with pytest.raises(UnlearnkitError, match="width must be a positive integer"):
        create_model("smallcnn", 10, 1, 28, width=0)


def test_28x28_model_learns_a_few_steps():
    torch.manual_seed(0)
    model = create_model("smallcnn", 2, 1, 28, width=4)
    x = torch.randn(32, 1, 28, 28)
    y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
