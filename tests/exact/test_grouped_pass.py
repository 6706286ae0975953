"""The channel-stacked pass (exact/grouped.py) against each shard run alone.

The ensemble-level equality with the per-shard loop is in test_packed_trunk.py (every setup,
every deletion state); here the pieces the ensembles there do not reach: grouped and depthwise
convolutions on a shared input, a batch norm that cannot fold (its convolution has two users),
an add of a shared and a stacked value, a Linear layer inside the adapted part, and which path
each real architecture takes."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn
from torch.func import functional_call

from unlearnkit.exact.grouped import StackedRest, channels_last_convolutions, stackable


class _Top(nn.Module):
    """A shared-input grouped conv, a depthwise conv, an unfoldable batch norm, a shared skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_g = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.bn_g = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn_dw = nn.BatchNorm2d(8)
        self.skip = nn.Conv2d(4, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten(1)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn_g(self.conv_g(x)))
        z = self.dw(y)
        z = self.bn_dw(z) + z  # the conv has two users: its batch norm does not fold
        z = z + self.skip(shared)  # stacked + (stacked from a shared input)
        z = z + 0.5  # a tensor plus a plain number
        return self.fc(self.flat(self.pool(torch.relu(z))))


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in module.named_buffers():
            if "running_var" in name:
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif "running_mean" in name:
                b.copy_(torch.randn(b.shape, generator=gen))
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module.eval()


@pytest.mark.parametrize("head_bias", [True, False])
def test_stacked_pass_equals_each_shard_alone(head_bias):
    rest = fx.symbolic_trace(_randomised(_Top(), 0))
    assert stackable(rest)
    head = _randomised(nn.Linear(6, 5, bias=head_bias), 1)
    m, gen = 3, torch.Generator().manual_seed(2)
    adapted = ("conv_g.weight", "dw.weight", "fc.weight")  # skip keeps its frozen weight
    per_shard = []
    for _ in range(m):
        w = {}
        for k in adapted:
            base = rest.get_parameter(k)
            w[k] = base + 0.1 * torch.randn(base.shape, generator=gen)
        h = {k: torch.randn(v.shape, generator=gen) for k, v in head.named_parameters()}
        per_shard.append((w, h))
    stacked = StackedRest(rest, "")
    assert stacked.folds == {"bn_g": "conv_g"}  # bn_dw's convolution also feeds the add
    x, shared = torch.randn(5, 4, 6, 6), torch.randn(5, 4, 6, 6)
    with torch.no_grad():
        got = stacked(stacked.weights(tuple(per_shard)), (x, shared))
        want = torch.stack(
            [
                functional_call(head, h, (functional_call(rest, w, (x, shared)),))
                for w, h in per_shard
            ]
        )
    assert got.shape == (m, 5, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_unsupported_operations_keep_the_vmap_pass():
    class Reshapes(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], -1)  # mixes the channel axis: not channel-wise

    assert not stackable(fx.symbolic_trace(Reshapes()))
    assert not stackable(fx.symbolic_trace(nn.Sequential(nn.LayerNorm(4))))
    assert stackable(fx.symbolic_trace(nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU())))


def test_channels_last_convolutions_keeps_the_output_and_changes_the_layout():
    net = _randomised(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), 3)
    traced = fx.symbolic_trace(net)
    x = torch.randn(2, 1, 8, 8)  # one channel: torch would pick NCHW on its own
    want = net(x)
    got = channels_last_convolutions(traced)(x)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("setup", "path"),
    [("smallcnn28-last3", "grouped"), ("resnet-all", "grouped"), ("vit-all", "vmap")],
)
def test_each_architecture_takes_its_path(setup, path):
    from test_packed_trunk import _ensemble  # the equality test's own ensembles

    ens = _ensemble("s3t", setup)
    assert ("grouped" if ens.packer.network.grouped is not None else "vmap") == path


def test_the_vmap_pass_can_be_chosen_and_agrees_with_the_stacked_one():
    from test_packed_trunk import _ensemble

    from unlearnkit.exact.packed import Packer

    ens = _ensemble("sisa", "resnet-layer4")
    vmap_only = Packer(ens.stack, ens.spec, ens.backbone_state, channel_stacked=False)
    assert vmap_only.network.grouped is None and ens.packer.network.grouped is not None
    x = ens.data.x[:5].clone()
    view = vmap_only.view(ens.serving_plan(), "mean_logits")
    torch.testing.assert_close(view.logits(x), ens.predict_logits(x), rtol=0, atol=1e-5)
