"""metrics.latency (interleaved timing, percentiles with n) and flop_floor.counted_floor."""

import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unlearnkit.metrics.flop_floor import counted_floor
from unlearnkit.metrics.latency import MIN_P99_SAMPLES, alternating_latency, latency_summary


def test_calls_alternate_after_the_warmup_and_each_is_timed_reps_times():
    order = []
    res = alternating_latency({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                              reps=4, warmup=2)  # fmt: skip
    assert order == ["a", "b"] * 6
    assert res["a"]["n"] == res["b"]["n"] == 4


def test_each_call_is_timed_alone_and_a_slower_one_shows_a_larger_p50():
    # sleeps: a lower bound on each call's time that a loaded machine cannot shorten
    res = alternating_latency({"short": lambda: time.sleep(0.001),
                               "long": lambda: time.sleep(0.03)}, reps=5, warmup=1)  # fmt: skip
    assert res["long"]["p50_ms"] >= 30.0 > res["short"]["p50_ms"] >= 1.0


def test_no_p99_from_fewer_than_the_minimum_samples():
    few = latency_summary([0.001] * (MIN_P99_SAMPLES - 1))
    assert few["p99_ms"] is None and few["p50_ms"] == pytest.approx(1.0)
    many = latency_summary([0.001] * 99 + [0.5] * 2)
    assert many["n"] == 101 and many["p99_ms"] > 1.0 and many["max_ms"] == pytest.approx(500.0)
    assert latency_summary([])["n"] == 0
    with pytest.raises(ValueError, match="reps"):
        alternating_latency({"a": lambda: None}, reps=0)


def test_counted_floor_counts_the_functions_flops_at_their_replayed_rate():
    a, b = torch.randn(64, 128), torch.randn(128, 32)
    conv, img = torch.nn.Conv2d(3, 8, 3), torch.randn(2, 3, 16, 16)

    def fn():
        return (a @ b).sum() + conv(img).sum()

    with FlopCounterMode(display=False) as counter:
        fn()
    floor = counted_floor(fn, "matmul + conv", threads=1, repeats=2)
    assert floor.flops == counter.get_total_flops() > 2 * 64 * 128 * 32
    assert floor.rate.flops == floor.flops and len(floor.rate.parts) == 2
    assert floor.seconds > 0 and "matmul + conv" in floor.assumptions
