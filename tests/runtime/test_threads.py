"""CPU threads: one helper applies them, in this process and in every worker process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runtime import create_executor
from unlearnkit.runtime.threads import (
    MAX_THREADS_ENV,
    apply_threads,
    available_cores,
    default_threads,
    resolve_threads,
    thread_report,
    using_threads,
)


def threads_seen(_: object) -> dict[str, object]:
    """What a worker runs on: torch's count and every BLAS/OpenMP pool's."""
    return {
        "pid": os.getpid(),
        "torch": torch.get_num_threads(),
        "pools": sorted({p["num_threads"] for p in threadpool_info()}),
    }


def test_default_is_the_affinity_capped_by_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(MAX_THREADS_ENV, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0)) == available_cores()
    monkeypatch.setenv(MAX_THREADS_ENV, "1")
    assert default_threads() == 1
    monkeypatch.setenv(MAX_THREADS_ENV, "zero")
    with pytest.raises(UnlearnkitError, match=MAX_THREADS_ENV):
        default_threads()
    with pytest.raises(UnlearnkitError, match="--threads 0"):
        resolve_threads(0)


def test_apply_sets_torch_and_blas_pools_in_a_fresh_process() -> None:
    code = (
        "import torch; from threadpoolctl import threadpool_info;"
        "from unlearnkit.runtime.threads import apply_threads; apply_threads(1);"
        "print(torch.get_num_threads(), torch.get_num_interop_threads(),"
        " sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "[1]"]


def test_using_threads_restores_the_count() -> None:
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_thread_report_records_threads_and_load() -> None:
    apply_threads(1)
    report = thread_report()
    assert report["torch_threads"] == 1
    assert report["cores_available"] == available_cores()
    assert len(report["load_average_1_5_15"]) == 3


def test_process_pool_workers_pin_one_thread_each() -> None:
    with create_executor("processes", workers=2) as ex:
        seen = ex.map(threads_seen, list(range(6)))
    assert {s["torch"] for s in seen} == {1}
    assert {p for s in seen for p in s["pools"]} == {1}
    assert os.getpid() not in {s["pid"] for s in seen}  # really other processes


def test_process_pool_threads_per_worker_is_honoured() -> None:
    with create_executor("processes", workers=1, threads_per_worker=2) as ex:
        assert ex.map(threads_seen, [0])[0]["torch"] == 2
    with pytest.raises(UnlearnkitError, match="threads_per_worker"):
        create_executor("processes", threads_per_worker=0)


@pytest.mark.slow  # starting Ray takes ~15 s
def test_ray_tasks_pin_one_thread_each() -> None:
    pytest.importorskip("ray")
    with create_executor("ray", num_cpus=2) as ex:
        seen = ex.map(threads_seen, list(range(4)))
    assert {s["torch"] for s in seen} == {1}
    assert {p for s in seen for p in s["pools"]} == {1}
