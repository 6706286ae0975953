"""Batched Jacobians against the per-sample reference, and the float64 Gram accumulator.

Figures these tests measure are printed (``pytest -s``) and quoted in docs/fast_ntk.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from ntk_helpers import perturbed_bn, rel
from torch import nn

from unlearnkit.models import create_model, select_trainable
from unlearnkit.ntk.gram import GramAccumulator
from unlearnkit.ntk.jacobian import batched_jacobian, reference_jacobian
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.ntk.rules import jacobian_plan


class ScaledHead(nn.Module):
    """Logits are *not* the head's output (head(x) * 2): the analytic head must step aside."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten())
        self.head = nn.Linear(27, 4)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.head(self.body(x))


# -- batched Jacobians ---------------------------------------------------------------------------
CASES = [  # model, peft, options, channels, image size
    ("smallcnn", "bn", {"width": 4}, 1, 8),
    ("resnet18", "bn", {}, 3, 16),
    ("vit_tiny_vpt", "prompts", {"depth": 2, "num_prompts": 3}, 1, 8),
    ("vit_tiny_vpt", "prompts", {"depth": 2, "num_prompts": 2, "deep": True}, 1, 8),
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c[0]}-{c[1]}{'-deep' * c[2].get('deep', 0)}"
)
def test_batched_jacobian_equals_the_per_sample_reference(case):
    name, peft, opts, chans, size = case
    torch.manual_seed(0)
    model = perturbed_bn(create_model(name, 5, chans, size, **opts))
    space = ParamSpace.from_model(model, select_trainable(model, peft))
    plan = jacobian_plan(model, space)
    assert plan.generic == [] and plan.head is not None  # every parameter by a rule
    x = torch.randn(5, chans, size, size)
    fast, f_fast = batched_jacobian(model, space, x)
    ref, f_ref = reference_jacobian(model, space, x)
    pseudo, _ = batched_jacobian(model, space, x, kernel="pntk")
    err, perr = rel(fast, ref), rel(pseudo, ref.sum(1) / math.sqrt(5))
    print(f"\n{name} {opts}: P={space.numel}, max rel diff exact {err:.1e}, pntk rows {perr:.1e}")
    assert fast.shape == ref.shape == (5, 5, space.numel)
    assert err < 1e-5 and perr < 1e-5
    # one batched pass vs per-sample passes: float32 sums split differently (logits ~4, so a few
    # ulps are ~1e-6; measured 3.0e-6 on an AMD EPYC machine)
    assert torch.allclose(f_fast, f_ref, rtol=1e-5, atol=1e-5)


def test_batched_jacobian_float64_and_fallbacks(tiny):
    model, data, names = tiny
    # conv.weight has no rule: the reference path fills its columns
    space = ParamSpace.from_model(model, ["conv.weight", *names])
    assert jacobian_plan(model, space).generic == ["conv.weight"]
    fast, _ = batched_jacobian(model, space, data.x[:6])
    ref, _ = reference_jacobian(model, space, data.x[:6])
    assert torch.allclose(fast, ref, atol=1e-12)
    torch.manual_seed(0)
    scaled = ScaledHead().double().eval()
    names = ["body.1.weight", "body.1.bias", "head.weight", "head.bias"]
    space = ParamSpace.from_model(scaled, names)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    fast, _ = batched_jacobian(scaled, space, x)
    ref, _ = reference_jacobian(scaled, space, x)
    assert torch.allclose(fast, ref, atol=1e-12)  # the head went through the reference path


# -- Gram accumulation ---------------------------------------------------------------------------
def test_float64_accumulator_beats_float32_on_an_ill_conditioned_gram():
    """500 chunks of 32 float32 rows with a shared offset and column scales over 3 decades."""
    torch.manual_seed(0)
    p, chunks, rows, lam = 40, 500, 32, 1e-2
    scales = torch.logspace(0, -3, p, dtype=torch.float64)
    u = (torch.randn(chunks * rows, p, dtype=torch.float64) * scales + 1.0).float()
    r = torch.randn(chunks * rows).float()
    exact_a, exact_b = u.double().T @ u.double(), u.double().T @ r.double()
    reg = exact_a + lam * torch.eye(p, dtype=torch.float64)
    x_ref = torch.linalg.solve(reg, exact_b)

    def residual(dtype: torch.dtype, product: torch.dtype | None) -> tuple[float, float]:
        acc = GramAccumulator(p, None, dtype, product)
        for i in range(chunks):
            acc.add(u[i * rows : (i + 1) * rows], r[i * rows : (i + 1) * rows], rows)
        a = acc.gram.double() + lam * torch.eye(p, dtype=torch.float64)
        x = torch.linalg.solve(a, acc.rhs.double())
        res = float((reg @ x - exact_b).norm() / exact_b.norm())
        return res, float((x - x_ref).norm() / x_ref.norm())

    f64, f32, exact = (
        residual(torch.float64, torch.float32),
        residual(torch.float32, None),
        residual(torch.float64, torch.float64),
    )
    print(
        f"\ncond {float(torch.linalg.cond(reg)):.1e}: solve residual / solution error: "
        f"float32 products + float64 sum {f64[0]:.1e} / {f64[1]:.1e}, pure float32 "
        f"{f32[0]:.1e} / {f32[1]:.1e}, float64 products {exact[0]:.1e} / {exact[1]:.1e}"
    )
    assert f64[0] < f32[0] / 10 and f64[1] < f32[1] / 10
    assert exact[0] < 1e-9
