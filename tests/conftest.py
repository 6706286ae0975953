"""Shared fixtures: digits loaded once, a quick training recipe, a tiny trained model directory,
and unlearning contexts built the way the library builds them."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.training import TrainConfig


def _save_tiny_trained(out):
    """A width-4 smallcnn trained 1 epoch on digits (BN + head trainable), saved to ``out``.

    Returns (trained, bundle) for tests that also need the model or the data in memory.
    """
    from unlearnkit.config import ExperimentConfig
    from unlearnkit.recipe import load_bundle, save_trained, train_original

    cfg = ExperimentConfig(
        model="smallcnn",
        peft="bn",
        pretrain=False,
        dataset_options={"test_fraction": 0.8},
        model_options={"width": 4},
        train=TrainConfig(epochs=1),
    )
    bundle = load_bundle(cfg)
    trained = train_original(cfg, bundle, 0)
    save_trained(out, trained, cfg, bundle)
    return trained, bundle


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", public_fraction=0.3)


@pytest.fixture(scope="session")
def quick_cfg() -> TrainConfig:
    return TrainConfig(epochs=3, lr=0.05, batch_size=64, seed=0)


@pytest.fixture(scope="session")
def save_tiny_trained():
    """``save_tiny_trained(out) -> (trained, bundle)``: a quick model directory for CLI tests."""
    return _save_tiny_trained


def _make_context(cfg, bundle, original, forget, seed: int = 0):
    """``experiment.unlearning_context`` with a private copy of the model.

    ``forget`` is a forget spec (``"class:3"``) or the ids themselves. Methods change
    ``ctx.model`` in place, so each context gets its own copy, as ``run_seed`` does.
    """
    from unlearnkit.data.forget import select_forget
    from unlearnkit.experiment import unlearning_context

    ids = select_forget(bundle.train, forget, seed) if isinstance(forget, str) else forget
    ctx = unlearning_context(cfg, bundle, original, torch.as_tensor(ids), seed)
    ctx.model = copy.deepcopy(original.model)
    return ctx


@pytest.fixture(scope="session")
def make_context():
    """``make_context(cfg, bundle, original, forget, seed=0) -> UnlearningContext``."""
    return _make_context


# -- no process left behind --------------------------------------------------------------------
# Every process the suite starts inherits this variable; at the end of the session, any process
# still carrying it (a worker orphaned by a server killed with SIGKILL, a pool never closed) fails
# the run, and is ended by its pid.
SESSION_VAR = "UNLEARNKIT_TEST_SESSION"
INFRASTRUCTURE = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def pytest_configure(config: pytest.Config) -> None:
    os.environ[SESSION_VAR] = uuid.uuid4().hex


def _session_processes(token: str) -> dict[int, str]:
    """pid -> command line of every other process carrying this session's variable."""
    marker = f"{SESSION_VAR}={token}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cmd and not any(word in cmd for word in INFRASTRUCTURE):
            found[int(entry.name)] = cmd.strip()
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    token = os.environ.get(SESSION_VAR)
    if token is None or not Path("/proc/self/environ").exists():
        return
    deadline = time.monotonic() + 10  # workers watching a dead parent need a moment
    left = _session_processes(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _session_processes(token)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {cmd[:200]}" for pid, cmd in sorted(left.items())]
    message = "the test session left processes behind (ended now):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(message, red=True)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
