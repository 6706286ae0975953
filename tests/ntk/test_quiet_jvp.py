"""torch 2.14's first forward-mode call warns about its own use of torch.jit.script; users of
fast_ntk must not see that in the middle of a run, and the values must not change."""

import subprocess
import sys

import torch
from torch.func import jvp

from unlearnkit.ntk.jacobian import forward_jvp

FIRST_JVP = """
import torch
from unlearnkit.ntk.jacobian import forward_jvp
out, tangent = forward_jvp(lambda w: torch.sin(w) * 2, (torch.ones(3),), (torch.ones(3),))
assert torch.allclose(tangent, 2 * torch.cos(torch.ones(3)))
"""


def test_first_forward_mode_call_in_a_process_prints_no_torch_deprecation():
    done = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", FIRST_JVP],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "jit" not in done.stderr


def test_forward_jvp_is_torch_func_jvp():
    x = torch.randn(5, dtype=torch.float64)
    v = torch.randn(5, dtype=torch.float64)

    def fn(w):
        return torch.tanh(w).cumsum(0)

    ours, theirs = forward_jvp(fn, (x,), (v,)), jvp(fn, (x,), (v,))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
