"""The head: found by timm's get_classifier, torchvision's attributes, or named; replaced when
the number of classes differs; used by the PEFT selection and the new head of w0."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import (
    create_model,
    find_head,
    head_parameter_names,
    name_head,
    prepare_model,
    replace_head,
    reset_head,
    select_trainable,
)

LIBRARY_MODELS = [
    ("timm:resnet18", "fc"),
    ("timm:efficientnet_b0", "classifier"),
    ("timm:convnext_atto", "head.fc"),
    ("timm:vit_tiny_patch16_224", "head"),
    ("torchvision:resnet18", "fc"),
    ("torchvision:mobilenet_v3_small", "classifier.3"),
    ("torchvision:vit_b_16", "heads.head"),
    ("vit_tiny_vpt", "vit.head"),
]


@pytest.mark.parametrize("name, path", LIBRARY_MODELS)
def test_head_names_and_bn_selection_follow_the_found_head(name, path):
    options = {"depth": 1} if name in ("timm:vit_tiny_patch16_224", "vit_tiny_vpt") else {}
    with torch.device("meta"):
        model = create_model(name, 10, 3, 32, **options)
    assert head_parameter_names(model) == [f"{path}.weight", f"{path}.bias"]
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        chosen = select_trainable(model, "bn")
        assert chosen[-2:] == [f"{path}.weight", f"{path}.bias"]


def test_torchvision_model_without_get_classifier_keeps_working_in_peft():
    model = torchvision.models.resnet18(num_classes=10)
    assert not hasattr(model, "get_classifier")
    names = select_trainable(model, "bn")
    assert "fc.weight" in names and all(
        p.requires_grad == (n in names) for n, p in model.named_parameters()
    )


class Plain(nn.Module):
    """A user's network whose head follows no convention."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.logits = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.body(x))


def test_a_named_head_wins_and_travels_with_copies():
    model = name_head(Plain(), "logits")
    assert find_head(copy.deepcopy(model)).path == "logits"
    with pytest.raises(UnlearnkitError, match=r"no module 'nope'.*top-level modules: body, logits"):
        name_head(Plain(), "nope")
    with pytest.raises(UnlearnkitError, match="cannot find the classifier head of Plain"):
        find_head(Plain())


def test_head_is_replaced_only_when_the_class_count_differs():
    model = name_head(Plain(classes=1000), "logits")
    keep = model.logits
    assert not replace_head(model, 1000) and model.logits is keep
    assert replace_head(model, 5)
    assert model.logits.out_features == 5 and model.logits.in_features == 8
    assert model(torch.randn(3, 1, 4, 4)).shape == (3, 5)


def test_prepare_model_is_the_python_api_for_any_module():
    model = prepare_model(Plain(), num_classes=3, head="logits")
    assert model.logits.out_features == 3
    assert select_trainable(model, "full")[-2:] == ["logits.weight", "logits.bias"]


def test_reset_head_touches_the_head_only():
    model = create_model("torchvision:mobilenet_v3_small", 10, 3, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_head(model, seed=3)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.3.weight", "classifier.3.bias"}
