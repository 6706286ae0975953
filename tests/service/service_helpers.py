"""Helpers shared by the service tests (imported as a plain module; see conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearnkit.service import DeletionService, ServiceConfig

ADMIN, PREDICT, DELETE = "admin-token-000000001", "predict-token-0000001", "delete-token-00000001"


def auth(token: str = ADMIN, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def parse_metrics(text: str) -> tuple[dict[tuple[str, tuple], float], dict[str, str]]:
    """A Prometheus exposition, parsed by prometheus_client's parser: ``{(sample name, sorted
    label pairs): value}`` and ``{family name: type}``."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[tuple[str, tuple], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            values[s.name, tuple(sorted(s.labels.items()))] = s.value
    return values, types


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def start_service(model_dir: Path, **overrides: Any) -> DeletionService:
    """A started service; background retraining in-process (no child process) by default."""
    settings: dict[str, Any] = {"retrain_in_subprocess": False, "retrain_poll_s": 0.05}
    settings.update(overrides)
    service = DeletionService(ServiceConfig(model_dir=model_dir, **settings))
    service.start()
    return service


@contextmanager
def running_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread, configured as ``serve``
    does (``options``: e.g. ``ssl_certfile``/``ssl_keyfile``); yields the base URL."""
    import uvicorn

    from unlearnkit.service.server import server_config

    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=0, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=30)
    assert server.started, "the server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if options.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model_dir, token_file, port: int, log, *options: str) -> subprocess.Popen:
    """`unlearnkit serve` as a child process, once healthy; ``options`` replace the defaults
    (snapshots every 4 deletions, no background retraining)."""
    import httpx

    cmd = [sys.executable, "-m", "unlearnkit", "serve", "--from", str(model_dir)]
    cmd += ["--port", str(port), "--tokens", str(token_file)]
    cmd += list(options or ("--snapshot-every", "4", "--no-background-retrain"))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        assert proc.poll() is None, "server exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start")


def pixel_inputs(prep: Any, x: Any) -> tuple[Any, list]:
    """Model inputs ``x`` as 8-bit pixels: (the exact model inputs those pixels give, the
    ``inputs`` array a client sends for them: [0, 1] = value / 255)."""
    pixels = prep.to_uint8(x)
    return prep.from_uint8(pixels), (pixels.float() / 255.0).tolist()
