"""Issue 30, findings 2 and 3: a client without a token cannot exhaust the server.

A real uvicorn server (configured as ``serve`` configures it) on 127.0.0.1, driven by bounded
loops of raw sockets: bodies of anonymous clients are never read (401, connection closed), a
body sent too slowly is cut off (408), a header block sent too slowly is closed, the number of
connections is bounded (503 beyond), and a flood of invented method names leaves the metrics
(and memory) as they were.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
from service_helpers import ADMIN, auth, running_server, start_service

from unlearnkit.service.app import create_app

MIB = 2**20


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Whatever the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def post_head(length: int, token: str | None = None) -> bytes:
    lines = [
        "POST /v1/deletions HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Idempotency-Key: k",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_anonymous_bodies_are_refused_unread_and_memory_stays_bounded(exact_dir, tokens):
    """Finding 2: 64 connections declaring 4 MiB and sending 2 MiB each, no token (the old
    guard read up to 4 MiB per connection before checking the token: +128 MiB here)."""
    service = start_service(exact_dir, background_retrain=False)
    try:
        with running_server(create_app(service, tokens)) as url:
            before = rss_mib()
            socks = []
            for _ in range(64):
                sock = socket.create_connection(address(url))
                sock.settimeout(5)
                sock.sendall(post_head(4 * MIB))
                try:
                    for _ in range(32):
                        sock.sendall(b"x" * 65536)
                except OSError:  # refused and closed before the client finished: good
                    pass
                socks.append(sock)
            answers = [read_response(s) for s in socks]
            grown = rss_mib() - before
            for s in socks:
                s.close()
    finally:
        service.close()
    assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers[0][:200]
    assert all(b"connection: close" in a.lower() for a in answers)
    assert grown < 48, f"RSS grew {grown:.0f} MiB"


def test_a_body_trickling_below_the_minimum_rate_is_cut_off_with_a_408(exact_dir, tokens):
    service = start_service(
        exact_dir, background_retrain=False, body_timeout_s=0.5, min_body_rate=1000
    )
    try:
        with running_server(create_app(service, tokens)) as url:
            sock = socket.create_connection(address(url))
            sock.sendall(post_head(100_000, ADMIN))
            started = time.monotonic()
            try:
                for _ in range(60):  # 10 bytes per 0.1 s: 100 bytes/s, for at most 6 s
                    sock.sendall(b"[" * 10)
                    time.sleep(0.1)
            except OSError:
                pass
            answer = read_response(sock)
            took = time.monotonic() - started
            sock.close()
            r = httpx.get(f"{url}/healthz")  # the server is fine
    finally:
        service.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 5.5
    assert r.status_code == 200
    assert "unlearnkit_slow_requests_total 1.0" in service.metrics.render()


def test_a_header_block_sent_byte_by_byte_is_closed_after_the_header_timeout(exact_dir, tokens):
    service = start_service(exact_dir, background_retrain=False)
    try:
        with running_server(create_app(service, tokens), header_timeout_s=1.0) as url:
            sock = socket.create_connection(address(url))
            sock.settimeout(0.3)
            started, closed = time.monotonic(), False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
                try:
                    sock.send(bytes([byte]))
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
            took = time.monotonic() - started
            sock.close()
    finally:
        service.close()
    assert closed and took < 4, f"still open after {took:.1f} s"


def test_connections_beyond_the_limit_get_a_503(exact_dir, tokens):
    service = start_service(exact_dir, background_retrain=False)
    try:
        with running_server(create_app(service, tokens), limit_concurrency=4) as url:
            idle = [socket.create_connection(address(url)) for _ in range(6)]
            time.sleep(0.2)
            with httpx.Client() as client:
                over = client.get(f"{url}/healthz").status_code
            for s in idle:
                s.close()
            time.sleep(0.3)
            with httpx.Client() as client:
                after = client.get(f"{url}/healthz").status_code
    finally:
        service.close()
    assert over == 503 and after == 200


def test_invented_method_names_do_not_grow_the_metrics(exact_dir, tokens):
    """Finding 3: each distinct method used to become a Prometheus label (40,000 of them: /metrics
    10 KB -> 69 MB). 2,000 distinct methods now all count as ``other``: the exposition keeps
    its lines, and memory its size."""
    service = start_service(exact_dir, background_retrain=False)
    try:
        with running_server(create_app(service, tokens)) as url, httpx.Client() as client:

            def flood(start: int, n: int) -> None:
                for i in range(start, start + n):
                    assert client.request(f"M{i:07d}", f"{url}/x").status_code in (404, 405)

            def metrics_text() -> str:
                return client.get(f"{url}/metrics", headers=auth(ADMIN)).text

            flood(0, 100)
            metrics_text()  # its own series (GET /metrics) exist from now on
            before = metrics_text()
            lines_before, size_before = len(before.splitlines()), len(before)
            rss_before = rss_mib()
            flood(100, 1900)
            after = metrics_text()
            grown = rss_mib() - rss_before
    finally:
        service.close()
    assert len(after.splitlines()) == lines_before
    assert abs(len(after) - size_before) < 200
    assert 'method="other"' in after and "M00" not in after
    assert grown < 20, f"RSS grew {grown:.0f} MiB"
