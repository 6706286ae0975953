"""FLOP floors measured at the computation's own shapes, dtype and threads, and the flag on a
floor that a measurement beat. No timing is asserted: what ran, at which shapes, and the flag."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from unlearnkit.metrics.flop_floor import (
    FlopFloor,
    GemmShape,
    MeasuredRate,
    gemm_assumptions,
    gemm_rate,
    replay_assumptions,
    replayed_rate,
)


class MatmulSpy(TorchDispatchMode):
    """Records (op, input shapes, dtype) of every mm and convolution that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, tuple[tuple[int, ...], ...], torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("mm", "convolution", "convolution_backward"):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.seen.append((name, tuple(tuple(t.shape) for t in tensors), tensors[0].dtype))
        return func(*args, **(kwargs or {}))


def test_gemm_rate_runs_exactly_the_given_shapes_in_the_given_dtype_and_threads():
    shapes = [GemmShape(8, 16, 4), GemmShape(3, 5, 7, count=2)]
    before = torch.get_num_threads()
    with MatmulSpy() as spy:
        rate = gemm_rate(shapes, torch.float64, threads=1, repeats=2)
    assert torch.get_num_threads() == before  # the caller's thread count is restored
    # one warm-up + 2 timed runs per shape, each at its own shape and in float64
    assert sorted(spy.seen) == sorted(
        [("mm", ((8, 16), (16, 4)), torch.float64)] * 3
        + [("mm", ((3, 5), (5, 7)), torch.float64)] * 3
    )
    assert rate.threads == 1 and rate.dtypes == ("float64",) and rate.how == "gemm"
    assert rate.flops == 2 * 8 * 16 * 4 + 2 * (2 * 3 * 5 * 7)  # count multiplies the FLOPs
    assert [p["label"] for p in rate.parts] == ["8x16x4", "3x5x7 (x2)"]
    assert rate.seconds == sum(p["best_s"] for p in rate.parts) > 0
    assert "float64 on 1 thread(s)" in gemm_assumptions(rate, "downdate")


def test_replayed_rate_times_the_functions_own_ops_at_their_shapes():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)

    def step() -> None:
        conv(x).square().sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    with MatmulSpy() as spy:
        rate = replayed_rate(step, threads=1, repeats=1)
    assert rate.flops == counter.get_total_flops() > 0  # the FLOPs FlopCounterMode counts
    convs = {s for s in spy.seen if s[0] == "convolution"}
    assert convs == {("convolution", ((2, 3, 8, 8), (4, 3, 3, 3), (4,)), torch.float32)}
    assert {p["label"].split("(")[0] for p in rate.parts} == {
        "convolution",
        "convolution_backward",
    }
    assert "2 distinct ops" in replay_assumptions(rate, "Jacobians")


class LayoutSpy(TorchDispatchMode):
    """Records whether each convolution's input ran channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.layouts: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ == "convolution":
            x = args[0]
            self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return func(*args, **(kwargs or {}))


def test_replay_keeps_each_operands_memory_format():
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    x_cl = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8)

    def both() -> None:
        with torch.no_grad():
            conv(x_cl)
            conv(x)

    with LayoutSpy() as spy:
        rate = replayed_rate(both, threads=1, repeats=1)
    # recorded (2 runs) + per distinct op one FLOP count, one warm-up and one timed run
    assert len(rate.parts) == 2  # the two layouts are two distinct ops
    assert spy.layouts.count(True) == spy.layouts.count(False) > 1


def measured(flops: float, seconds: float) -> MeasuredRate:
    return MeasuredRate("gemm", ("float64",), 1, "cpu", 3, flops, seconds, ())


def test_a_time_below_its_floor_is_flagged_as_an_invalid_floor():
    floor = FlopFloor("downdate", 4e9, measured(1e9, 0.5), "stated")  # 2 GFLOP/s -> 2 s floor
    assert floor.seconds == 2.0
    beaten = floor.check(1.5)
    assert not beaten.valid and beaten.verdict.startswith("INVALID FLOOR")
    held = floor.check(3.0)
    assert held.valid and held.multiple == 1.5 and "INVALID" not in held.verdict
    assert floor.as_dict()["assumptions"] == "stated"
    assert beaten.as_dict()["valid"] is False


def test_the_precompute_limit_flags_a_time_below_it():
    from unlearnkit.ntk.cost import PrecomputeCost

    cost = PrecomputeCost(100, 10, "exact", 1e9, 1e9, 1e9, 1)  # 2 GFLOP at 1 GFLOP/s: 2 s
    assert cost.limit_s_per_sample == 2.0
    assert not cost.check(1.0).valid and cost.check(3.0).valid
    assert "square 1024 float32 GEMM" in cost.as_dict()["assumptions"]
