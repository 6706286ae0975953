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


class CountedPickles:
    """A shared payload that counts how often this process pickles it."""

    pickled = 0

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __getstate__(self) -> dict:
        CountedPickles.pickled += 1
        return {"offset": self.offset}

    def __setstate__(self, state: dict) -> None:
        self.offset = state["offset"]


def add_offset(shared: CountedPickles, x: int) -> int:
    time.sleep(0.01 * (5 - x % 5))
    return shared.offset + x


def unordered(name: str, **options) -> tuple[dict[int, int], int]:
    CountedPickles.pickled = 0
    with create_executor(name, **options) as ex:
        got = dict(ex.map_unordered(add_offset, CountedPickles(100), list(range(8))))
    return got, CountedPickles.pickled


def test_map_unordered_local_and_processes_ship_shared_once_per_worker() -> None:
    want = {i: 100 + i for i in range(8)}
    assert unordered("local") == (want, 0)
    got, pickles = unordered("processes", workers=2)
    assert got == want and pickles == 2  # once per worker process, not once per item


@pytest.mark.slow  # starting Ray takes ~15 s
def test_ray_map_unordered_puts_shared_once() -> None:
    pytest.importorskip("ray")
    got, pickles = unordered("ray", num_cpus=2)
    assert got == {i: 100 + i for i in range(8)} and pickles == 1
