"""The README's five-minute tour, driven through the real CLI on generated images: train,
unlearn with SalUn, evaluate and export the unlearned model, train an S3T ensemble, serve it,
predict a PNG and delete over HTTP, then read the same record of deletions from the CLI (while
the service runs, read-only; after it stops, `s3t delete` of an id it deleted says so)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

SRC = Path(__file__).parents[2] / "src"
TOKEN = "tour-token-0123456789"
ENV = {
    **os.environ,
    "PYTHONPATH": str(SRC),
    "UNLEARNKIT_TOKENS": json.dumps(
        {"tokens": [{"name": "me", "token": TOKEN, "scopes": ["admin"]}]}
    ),
}

pytestmark = pytest.mark.slow


def make_images(root: Path, per_class: int = 40) -> None:
    """Three visually distinct classes of 24x28 RGB images (not square: the loader must cope)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :28]
    shapes = {
        "circle": (yy - 12) ** 2 + (xx - 14) ** 2 < 40,
        "square": (abs(yy - 12) < 6) & (abs(xx - 14) < 6),
        "stripes": xx % 6 == 0,
    }
    for name, mask in shapes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (24, 28, 3)).astype(np.uint8)
            img[mask] = 200 + rng.integers(0, 50)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnkit", *args],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_tour(tmp_path: Path) -> None:
    make_images(tmp_path / "my_images")
    data = ["--dataset", "imagefolder", "--data-dir", "my_images", "--threads", "1"]
    cli("train", *data, "--out", "runs/model", "--epochs", "3", cwd=tmp_path)
    cli("unlearn", "--from", "runs/model", "--method", "salun", "--forget", "class:2",
        "--threads", "1", cwd=tmp_path)  # fmt: skip
    unlearned = tmp_path / "runs/unlearn-salun/model"
    record = json.loads((unlearned / "model.safetensors.json").read_text())["unlearning"]
    assert record["method"] == "salun" and record["n_forget"] > 0
    shown = cli("evaluate", "--from", str(unlearned), "--threads", "1", cwd=tmp_path)
    assert "(salun)" in shown.stdout  # measured on the forget set its record names
    cli("export", "--from", str(unlearned), "--out", "salun.pt2", cwd=tmp_path)
    assert (tmp_path / "salun.pt2").stat().st_size > 0

    cli("s3t", "train", *data, "--out", "runs/s3t", "--shards", "3", "--slices", "2",
        "--sequences", "2", "--epochs", "2", cwd=tmp_path)  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "unlearnkit", "serve", "--from", "runs/s3t", "--port", str(port),
         "--threads", "1"],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        png = base64.b64encode((tmp_path / "my_images/square/000.png").read_bytes()).decode()
        answer = httpx.post(f"{base}/v1/predict", json={"images": [png]}, headers=auth, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
        deleted = httpx.post(
            f"{base}/v1/deletions",
            json={"sample_ids": [3, 17]},
            headers={**auth, "Idempotency-Key": "ticket-1"},
            timeout=60,
        )
        assert deleted.status_code == 202 and deleted.json()["status"] == "applied"
        model = httpx.get(f"{base}/v1/model", headers=auth, timeout=60).json()
        assert model["version"] >= 1
        request_id = deleted.json()["request_id"]
        # the CLI reads the running service's record (read-only) but may not write beside it
        live = json.loads(cli("s3t", "status", "--from", "runs/s3t", cwd=tmp_path).stdout)
        assert live["deleted_samples"] == 2 and live["version"] >= model["version"]
        busy = subprocess.run(
            [sys.executable, "-m", "unlearnkit", "s3t", "delete", "--from", "runs/s3t",
             "--ids", "5"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600,
        )  # fmt: skip
        assert busy.returncode == 2 and "POST /v1/deletions" in busy.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    # one record: after the service stopped, the CLI sees its deletions and does not redo them
    status = json.loads(cli("s3t", "status", "--from", "runs/s3t", cwd=tmp_path).stdout)
    assert status["deleted_samples"] == 2 and status["version"] >= model["version"]
    again = cli("s3t", "delete", "--from", "runs/s3t", "--ids", "3", cwd=tmp_path)
    assert json.loads(again.stdout) == {
        "sample_id": 3, "already_deleted": True, "request_id": request_id, "client": "me"
    }  # fmt: skip
    assert "already deleted" in again.stderr
    fresh = cli("s3t", "delete", "--from", "runs/s3t", "--ids", "5", cwd=tmp_path)
    assert json.loads(fresh.stdout.splitlines()[0])["sample_id"] == 5
    status = json.loads(cli("s3t", "status", "--from", "runs/s3t", cwd=tmp_path).stdout)
    assert status["deleted_samples"] == 3 and status["ledger"]["events"] >= 2
