"""Turning request bodies into model inputs, with errors that name what is wrong."""

from __future__ import annotations

import base64
import binascii
import io
import math

import torch
from PIL import Image, UnidentifiedImageError

from unlearnkit.data.preprocess import Preprocessing
from unlearnkit.errors import UnlearnkitError


def array_batch(inputs: list, prep: Preprocessing, max_batch: int) -> torch.Tensor:
    """Nested lists of pixels in [0, 1] (8-bit value / 255) at the model's channels and size ->
    model inputs (the model's saved normalisation applied); ragged, non-numeric or mis-shaped
    input is refused."""
    shape = (prep.channels, prep.size, prep.size)
    if not inputs:
        raise UnlearnkitError("inputs is empty")
    if len(inputs) > max_batch:
        raise UnlearnkitError(f"inputs has {len(inputs)} items; at most {max_batch} per request")
    try:
        x = torch.tensor(inputs, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise UnlearnkitError("inputs must be a rectangular nested array of numbers") from None
    want = (len(inputs), *shape)
    if tuple(x.shape) != want:
        raise UnlearnkitError(
            f"inputs has shape {tuple(x.shape)} but the model takes "
            f"(N, {shape[0]}, {shape[1]}, {shape[2]})"
        )
    if not bool(torch.isfinite(x).all()):
        raise UnlearnkitError("inputs contains NaN or infinite values")
    return prep.from_unit_range(x)


def image_batch(
    images: list[str], prep: Preprocessing, max_batch: int, max_bytes: int
) -> torch.Tensor:
    """base64 PNG/JPEG -> model inputs, decoded, resized, cropped and normalised exactly as
    the training images were (the model's saved preprocessing)."""
    if not images:
        raise UnlearnkitError("images is empty")
    if len(images) > max_batch:
        raise UnlearnkitError(f"images has {len(images)} items; at most {max_batch} per request")
    out = []
    for k, text in enumerate(images):
        if len(text) > math.ceil(max_bytes / 3) * 4 + 4:
            raise UnlearnkitError(f"images[{k}] is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                if img.width * img.height > 4096 * 4096:
                    raise UnlearnkitError(f"images[{k}] is {img.width}x{img.height}; too large")
                pixels = prep.image_pixels(img)
        except UnlearnkitError:
            raise
        except (binascii.Error, ValueError):
            raise UnlearnkitError(f"images[{k}] is not valid base64") from None
        except (UnidentifiedImageError, OSError):
            raise UnlearnkitError(f"images[{k}] is not a readable PNG/JPEG image") from None
        out.append(pixels)
    return prep.from_uint8(torch.stack(out))
