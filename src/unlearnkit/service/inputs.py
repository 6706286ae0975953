"""Turning request bodies into model inputs, with errors that name what is wrong."""

from __future__ import annotations

import base64
import binascii
import io
import math

import torch
from PIL import Image, UnidentifiedImageError

from unlearnkit.errors import UnlearnkitError


def array_batch(inputs: list, shape: tuple[int, int, int], max_batch: int) -> torch.Tensor:
    """Nested lists -> float32 (N, C, H, W); ragged, non-numeric or mis-shaped input is refused."""
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
    return x


def image_batch(
    images: list[str], shape: tuple[int, int, int], max_batch: int, max_bytes: int
) -> torch.Tensor:
    """base64 PNG/JPEG -> float32 (N, C, H, W) in [0, 1] at the model's size and channels."""
    if not images:
        raise UnlearnkitError("images is empty")
    if len(images) > max_batch:
        raise UnlearnkitError(f"images has {len(images)} items; at most {max_batch} per request")
    channels, height, width = shape
    out = []
    for k, text in enumerate(images):
        if len(text) > math.ceil(max_bytes / 3) * 4 + 4:
            raise UnlearnkitError(f"images[{k}] is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                if img.width * img.height > 4096 * 4096:
                    raise UnlearnkitError(f"images[{k}] is {img.width}x{img.height}; too large")
                img = img.convert("L" if channels == 1 else "RGB").resize((width, height))
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        except UnlearnkitError:
            raise
        except (binascii.Error, ValueError):
            raise UnlearnkitError(f"images[{k}] is not valid base64") from None
        except (UnidentifiedImageError, OSError):
            raise UnlearnkitError(f"images[{k}] is not a readable PNG/JPEG image") from None
        pixels = data.view(height, width, -1).permute(2, 0, 1).float() / 255.0
        if pixels.shape[0] != channels:
            raise UnlearnkitError(f"images[{k}] cannot be read as {channels} channels")
        out.append(pixels)
    return torch.stack(out)
