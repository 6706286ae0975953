"""Issue 30, finding 4: what decoding a prediction's images may cost.

PNG and JPEG only; a header claiming a decompression bomb is a 422 (no 500, no traceback, the
keep-alive connection kept); the pixels a request may decode, all images together, are bounded
before any pixel is decoded."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import pytest
from PIL import Image
from service_helpers import PREDICT, auth, running_server, start_service

from unlearnkit.service.app import create_app


def encode(img: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_claiming(width: int, height: int) -> str:
    """A tiny PNG (signature, IHDR, an empty IDAT, IEND) whose header claims width x height."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_formats_other_than_png_and_jpeg_are_refused(serve, exact_dir, fmt):
    image = encode(Image.new("L", (8, 8), 128), fmt)
    with serve(exact_dir, background_retrain=False) as client:
        r = client.post("/v1/predict", json={"images": [image]}, headers=auth(PREDICT))
        ok = [
            client.post(
                "/v1/predict",
                json={"images": [encode(Image.new("L", (8, 8), 9), f)]},
                headers=auth(PREDICT),
            ).status_code
            for f in ("PNG", "JPEG")
        ]
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == f"images[0] is {fmt}; only PNG and JPEG are accepted"
    assert ok == [200, 200]


def test_a_bomb_header_is_a_422_and_the_connection_is_kept(exact_dir, tokens):
    bomb = png_header_claiming(20000, 20000)
    assert len(base64.b64decode(bomb)) < 80
    service = start_service(exact_dir, background_retrain=False)
    try:
        with (
            running_server(create_app(service, tokens)) as url,
            httpx.Client(base_url=url) as client,
        ):
            r = client.post("/v1/predict", json={"images": [bomb]}, headers=auth(PREDICT))
            after = client.post(
                "/v1/predict",
                json={"images": [encode(Image.new("L", (8, 8), 1), "PNG")]},
                headers=auth(PREDICT),
            )
            pool = client._transport._pool  # one connection served both requests
            connections = len(pool.connections)
    finally:
        service.close()
    assert r.status_code == 422, r.text
    assert "decompression bomb" in r.json()["error"]["message"]
    assert "Traceback" not in r.text
    assert after.status_code == 200 and connections == 1


def test_the_pixels_of_a_request_are_bounded_before_decoding(serve, exact_dir):
    """5 grey 2048x2048 PNGs declare 21 M pixels, over a 16 M budget: refused from their
    headers (the review's 192 x 4096x4096 request took 13 s of CPU to decode)."""
    big = encode(Image.new("L", (2048, 2048), 0), "PNG")
    with serve(exact_dir, background_retrain=False, max_decode_pixels=2**24) as client:
        r = client.post("/v1/predict", json={"images": [big] * 5}, headers=auth(PREDICT))
        ok = client.post("/v1/predict", json={"images": [big] * 3}, headers=auth(PREDICT))
    assert r.status_code == 422, r.text
    assert "more than 16777216 pixels in total" in r.json()["error"]["message"]
    assert ok.status_code == 200
