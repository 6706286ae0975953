"""``--threads`` on the commands that train: applied in the process, recorded in the results."""

from __future__ import annotations

import json
import subprocess
import sys

from cli_subprocess import ENV, cli

TEXT = {"capture_output": True, "text": True}


def test_demo_threads_flag_is_applied_and_recorded(tmp_path) -> None:
    out = tmp_path / "demo"
    proc = cli(
        "demo", "--out", str(out), "--methods", "finetune", "--epochs", "1", "--threads", "1"
    )
    assert proc.returncode == 0, proc.stderr
    machine = json.loads((out / "results.json").read_text())["machine"]
    assert machine["torch_threads"] == 1
    assert len(machine["load_average_1_5_15"]) == 3
    assert machine["precision"] == "fp32" and machine["device"] in ("cpu", "cuda:0")  # the runtime


def test_default_threads_follow_the_environment_cap(tmp_path) -> None:
    out = tmp_path / "demo"
    env = {**ENV, "UNLEARNKIT_MAX_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "unlearnkit",
            "demo",
            "--out",
            str(out),
            "--methods",
            "finetune",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "results.json").read_text())["machine"]["torch_threads"] == 1


def test_bad_threads_value_is_one_clean_line(tmp_path) -> None:
    proc = cli("demo", "--out", str(tmp_path / "x"), "--threads", "0")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--threads" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_cli_sets_a_passive_openmp_wait_policy_before_torch_loads() -> None:
    """The variable only works if set before torch's OpenMP runtime starts: importing the CLI
    must not import torch, and a user's own value is kept."""
    code = (
        "import os, sys; import unlearnkit.cli;"
        "print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in ENV.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "PASSIVE"], out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "ACTIVE"], out.stderr


def test_the_library_sets_the_same_policy_and_configure_warns_when_too_late() -> None:
    """The Python API behaves like the CLI: importing unlearnkit before torch makes idle OpenMP
    threads sleep; after torch it cannot, and ``runtime.configure`` says so."""
    first = (
        "import os, sys; import unlearnkit; print(os.environ['OMP_WAIT_POLICY']);"
        "from unlearnkit.runtime import configure; print(configure(1))"
    )
    env = {k: v for k, v in ENV.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-W", "error", "-c", first], env=env, **TEXT)
    assert out.stdout.split() == ["PASSIVE", "1"], out.stderr
    late = "import torch, unlearnkit; from unlearnkit.runtime import configure; configure(1)"
    out = subprocess.run([sys.executable, "-c", late], env=env, **TEXT)
    assert out.returncode == 0 and "torch was imported before unlearnkit" in out.stderr
