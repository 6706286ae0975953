"""Models by name from every source, on small real architectures, and rebuilt in a spawned
worker exactly as in the parent."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import MODELS, Architecture, check_model_name, create_model, find_head
from unlearnkit.runtime import ProcessExecutor

# (model, in_chans, image size, where its head is)
MATRIX = [
    ("timm:resnet18", 3, 32, "fc"),
    ("timm:efficientnet_b0", 3, 32, "classifier"),
    ("timm:convnext_atto", 3, 32, "head.fc"),
    ("timm:vit_tiny_patch16_224", 3, 32, "head"),
    ("torchvision:resnet18", 3, 32, "fc"),
    ("torchvision:mobilenet_v3_small", 3, 64, "classifier.3"),
    ("torchvision:resnet18", 1, 32, "fc"),  # a grey-scale first conv, refitted
    ("smallcnn", 1, 8, "head"),
]


@pytest.mark.parametrize("name, chans, size, head", MATRIX)
def test_each_source_builds_a_classifier_of_the_data_shape(name, chans, size, head):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=chans, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, chans, size, size)).shape == (2, 7)
    found = find_head(model)
    assert found.path == head
    assert isinstance(found.module, torch.nn.Linear) and found.module.out_features == 7


def test_timm_options_reach_the_model():
    vit = create_model("timm:vit_tiny_patch16_224", 10, 3, 32, depth=2, patch_size=8)
    assert len(vit.blocks) == 2 and vit.patch_embed.proj.kernel_size == (8, 8)
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # img_size follows the data
    with pytest.raises(UnlearnkitError, match=r"timm model 'resnet18'.*bogus"):
        create_model("timm:resnet18", 10, 3, 32, bogus=1)


def test_torchvision_first_conv_is_folded_from_rgb():
    torch.manual_seed(0)
    rgb = create_model("torchvision:resnet18", 10, 3, 32)
    torch.manual_seed(0)
    grey = create_model("torchvision:resnet18", 10, 1, 32)
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(grey.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))


@pytest.mark.parametrize("source", ["timm:resnet18", "torchvision:resnet18"])
def test_downloads_are_refused(source):
    with pytest.raises(UnlearnkitError, match="nothing is downloaded"):
        create_model(source, 10, 3, 32, pretrained=True)


@pytest.mark.parametrize(
    "name, closest",
    [
        ("resnet50", "timm:resnet50, torchvision:resnet50"),
        ("timm:resnt18", "timm:resnet18"),
        ("torchvision:mobilenet_v3_smal", "torchvision:mobilenet_v3_small"),
        ("smalcnn", "smallcnn"),
    ],
)
def test_unknown_names_suggest_the_closest(name, closest):
    with pytest.raises(UnlearnkitError) as err:
        check_model_name(name)
    message = str(err.value)
    assert message.startswith(f"unknown model {name!r}; closest: {closest}")
    assert "\n" not in message


def test_unknown_source_and_bad_module_specs():
    with pytest.raises(UnlearnkitError, match="unknown model source 'keras'"):
        check_model_name("keras:resnet")
    with pytest.raises(UnlearnkitError, match=r"module:package.module:factory"):
        check_model_name("module:no_factory_given")
    with pytest.raises(UnlearnkitError, match="cannot import 'no_such_pkg_xyz'"):
        check_model_name("module:no_such_pkg_xyz:make")
    with pytest.raises(UnlearnkitError, match="has no callable 'nope'"):
        check_model_name("module:unlearnkit.models.smallcnn:nope")


USER_CODE = textwrap.dedent(
    """
    import torch
    from torch import nn
    from unlearnkit.models import MODELS


    class Net(nn.Module):
        def __init__(self, classes=1000, width=8):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
            self.out = nn.Linear(width, classes)

        def forward(self, x):
            return self.out(self.body(x))


    def make(width=8):
        # takes none of num_classes / in_chans: unlearnkit fits the head and first conv
        return Net(width=width)


    @MODELS.register("uk_test_registered_net")
    def registered(num_classes, in_chans, image_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size**2, num_classes))
    """
)

HELPER = textwrap.dedent(
    """
    import torch


    def build_seeded(arch):
        torch.manual_seed(0)
        return arch.build().state_dict()
    """
)


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """``uk_user_models`` (a factory and a registration on import) on sys.path."""
    (tmp_path / "uk_user_models.py").write_text(USER_CODE)
    (tmp_path / "uk_test_helper.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    yield tmp_path
    for name in ("uk_user_models", "uk_test_helper"):
        sys.modules.pop(name, None)


def test_module_factory_gets_its_head_and_channels_fitted(user_code):
    model = create_model("module:uk_user_models:make", 4, 1, 16, width=5, head="out")
    assert model.out.out_features == 4 and model.body[0].in_channels == 1
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert find_head(model).path == "out"
    # no convention finds 'out': unnamed, the head is a one-line error that says how to name it
    with pytest.raises(UnlearnkitError, match=r"--head NAME.*last Linear layers: out"):
        create_model("module:uk_user_models:make", 4, 3, 16)


def test_spawned_worker_rebuilds_the_same_models(user_code):
    import uk_test_helper  # the worker imports it by name too
    import uk_user_models  # noqa: F401 - registers uk_test_registered_net in this process

    archs = [  # the run-time registered name first: nothing has imported its module there yet
        Architecture("uk_test_registered_net", 5, 1, 8),
        Architecture("timm:convnext_atto", 5, 3, 32),
        Architecture("module:uk_user_models:make", 5, 1, 16, {"width": 6, "head": "out"}),
    ]
    here = [uk_test_helper.build_seeded(a) for a in archs]
    with ProcessExecutor(workers=1) as pool:
        there = pool.map(uk_test_helper.build_seeded, archs)
    for mine, theirs in zip(here, there, strict=True):
        assert list(mine) == list(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
