import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import count_parameters, create_model, head_parameter_names, select_trainable
from unlearnkit.models.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize(
    "name, size", [("smallcnn", 8), ("resnet18", 8), ("vit_tiny", 8), ("resnet18", 32)]
)
def test_models_forward(name, size):
    kwargs = {"depth": 2} if name == "vit_tiny" else {}
    model = create_model(name, num_classes=7, in_chans=3, image_size=size, **kwargs).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert head_parameter_names(model)


def test_bn_selection_counts():
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, "bn")
    assert count_parameters(model, names) == (970, 56714)
    assert all(p.requires_grad == (n in names) for n, p in model.named_parameters())
    resnet = create_model("resnet18", 10, 3, 32)
    trainable, total = count_parameters(resnet, select_trainable(resnet, "bn"))
    assert trainable == 9600 + 5130 and 11_000_000 < total < 11_300_000


def test_bn_on_vit_is_refused():
    vit = create_model("vit_tiny", 10, 3, 8, depth=1)
    with pytest.raises(UnlearnkitError, match="has none"):
        select_trainable(vit, "bn")


def test_checkpoint_roundtrip_and_errors(tmp_path):
    model = create_model("smallcnn", 10, 1, 8)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, {"note": "x"})
    other = create_model("smallcnn", 10, 1, 8)
    meta = load_checkpoint(path, other)
    assert meta["note"] == "x" and "torch" in meta["versions"]
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    )
    wrong = create_model("smallcnn", 5, 1, 8)
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(UnlearnkitError, match="does not fit"):
        load_checkpoint(path, wrong)
    assert all(torch.equal(before[k], v) for k, v in wrong.state_dict().items())
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(UnlearnkitError, match="corrupt"):
        load_checkpoint(path, other)
    with pytest.raises(UnlearnkitError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors", other)


def test_pth_weights_only(tmp_path):
    model = create_model("smallcnn", 10, 1, 8)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    other = create_model("smallcnn", 10, 1, 8, weights=tmp_path / "w.pth")
    assert torch.equal(other.head.weight, model.head.weight)


def test_unknown_model_option_is_a_clear_error():
    with pytest.raises(UnlearnkitError, match=r"no option 'bogus'.*depth"):
        create_model("vit_tiny", 10, 1, 8, bogus=1)
