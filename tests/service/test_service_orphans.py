"""Issue 30, finding 7: a worker process dies with its parent.

A parent starts a spawned pool worker exactly as the service's retrainer (``_child_init``) and
the process executor (``_init_worker``) do, and is killed with SIGKILL: the worker must be gone
within seconds instead of running on re-parented (a retrain nobody will commit, memory held).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from {module} import {init} as init

if __name__ == "__main__":
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=init, initargs={args}
    )
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie nobody reaped has ended too


@pytest.mark.parametrize(
    ("module", "init", "args"),
    [
        ("unlearnkit.service.retrainer", "_child_init", (1, 0)),
        ("unlearnkit.runtime.executors", "_init_worker", (1, None, None)),  # threads, runtime, GPUs
    ],
)
def test_a_worker_dies_with_its_parent_killed_with_sigkill(tmp_path, module, init, args):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(module=module, init=init, args=args))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        worker = int(parent.stdout.readline())
        assert alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        end = time.monotonic() + 10
        while alive(worker) and time.monotonic() < end:
            time.sleep(0.1)
        gone = not alive(worker)
    finally:
        parent.kill()
        parent.wait()
    assert gone, f"worker {worker} outlived its parent"
