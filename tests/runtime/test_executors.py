"""Executors: same results, same order, whichever backend runs the jobs."""

from __future__ import annotations

import time

import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runtime import EXECUTORS, create_executor


def square_after_delay(x: int) -> int:
    time.sleep(0.01 * (5 - x % 5))  # later items finish first: order must still hold
    return x * x


def test_registry_names() -> None:
    assert EXECUTORS.names() == ["local", "processes", "ray"]
    with pytest.raises(UnlearnkitError, match="unknown executor 'dask'"):
        create_executor("dask")


def test_local_map_keeps_order() -> None:
    with create_executor("local") as ex:
        assert ex.map(square_after_delay, list(range(7))) == [i * i for i in range(7)]
        assert ex.map(square_after_delay, []) == []


@pytest.mark.slow  # starting Ray takes ~15 s
def test_ray_local_cluster_keeps_order() -> None:
    pytest.importorskip("ray")
    with create_executor("ray", num_cpus=2) as ex:
        assert ex.map(square_after_delay, list(range(6))) == [i * i for i in range(6)]
