"""What decoding a prediction's images may cost, checked from their headers before any pixel
is decoded.

Only PNG and JPEG are accepted (Pillow would decode GIF, BMP, TIFF and more). Each image's
header declares its size; the total over a request is bounded (``max_decode_pixels``), so one
request of many large images cannot take seconds of CPU. A header claiming a decompression bomb
(Pillow's ``DecompressionBombError``) is a 422 like any other refused image, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import io
import math

from PIL import Image, UnidentifiedImageError

from unlearnkit.errors import UnlearnkitError

ACCEPTED = ("PNG", "JPEG")


def _declared_format(raw: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            return img.format
    except Exception:  # any failure: not an image Pillow knows
        return None


def check_images(images: list[str], max_pixels: int, max_bytes: int) -> None:
    """Refuse (``UnlearnkitError``, a 422) images that are not PNG/JPEG, whose header is
    unreadable or claims a bomb, or that together declare more than ``max_pixels`` pixels."""
    total = 0
    for k, text in enumerate(images):
        if len(text) > math.ceil(max_bytes / 3) * 4 + 4:
            raise UnlearnkitError(f"images[{k}] is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UnlearnkitError(f"images[{k}] is not valid base64") from None
        try:
            with Image.open(io.BytesIO(raw), formats=ACCEPTED) as img:
                width, height = img.size
        except Image.DecompressionBombError:
            raise UnlearnkitError(
                f"images[{k}] declares more pixels than any image may have (a decompression "
                "bomb); refused without decoding"
            ) from None
        except UnidentifiedImageError:
            found = _declared_format(raw)
            if found is not None:
                raise UnlearnkitError(
                    f"images[{k}] is {found}; only PNG and JPEG are accepted"
                ) from None
            raise UnlearnkitError(f"images[{k}] is not a readable PNG/JPEG image") from None
        except (OSError, ValueError, SyntaxError):
            raise UnlearnkitError(f"images[{k}] is not a readable PNG/JPEG image") from None
        total += width * height
        if total > max_pixels:
            raise UnlearnkitError(
                f"the images declare more than {max_pixels} pixels in total (images[0..{k}] "
                f"alone: {total}); send fewer or smaller images"
            )
