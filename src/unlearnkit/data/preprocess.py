"""The preprocessing a model was trained with, as one record that travels with the model.

Training data, ``evaluate``, the audit and the deletion service all turn pixels into model
inputs through one :class:`Preprocessing`: decode -> resize the shorter side -> centre crop ->
channels -> pixel units -> ``(x - mean) / std``. The record is saved with every model directory
(``train``, S3T / SISA), so what a client sends over HTTP is processed exactly as the training
images were.

Pixel units: the data set's own, named by ``pixel_max`` (the value of a white pixel): 1.0 for
sources read as [0, 1] (digits, CIFAR, ImageFolder), 255.0 for MNIST-format files, whose
statistics are kept in raw byte units so that models trained before the record existed keep
their fingerprints. An 8-bit image of value ``v`` is ``v * pixel_max / 255`` in these units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unlearnkit.errors import UnlearnkitError, validation_message

Interpolation = Literal["bilinear", "bicubic", "nearest"]


class Preprocessing(BaseModel):
    """How pixels become this model's inputs (a frozen record; JSON in and out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: int = Field(ge=1, description="1 (grey) or 3 (RGB); images are converted to it")
    size: int = Field(ge=1, description="model input height = width, after the centre crop")
    resize: int = Field(ge=1, description="the shorter image side is resized to this first")
    interpolation: Interpolation = "bilinear"
    pixel_max: float = Field(1.0, gt=0, description="a white pixel in the units of mean / std")
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stats: str = Field(description="where mean / std come from (never from deletable data)")

    @model_validator(mode="after")
    def _per_channel(self) -> Preprocessing:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need {self.channels} values (one per channel), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise ValueError("std must be positive")
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) is smaller than the crop ({self.size})")
        return self

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_stats(
        cls,
        mean: torch.Tensor | tuple[float, ...],
        std: torch.Tensor | tuple[float, ...],
        size: int,
        stats: str,
        *,
        resize: int | None = None,
        pixel_max: float = 1.0,
        interpolation: Interpolation = "bilinear",
    ) -> Preprocessing:
        """From per-channel statistics (float32 tensors round-trip exactly through floats)."""
        m = [float(v) for v in torch.as_tensor(mean, dtype=torch.float32).flatten()]
        s = [float(v) for v in torch.as_tensor(std, dtype=torch.float32).flatten()]
        return cls(
            channels=len(m),
            size=size,
            resize=resize or size,
            interpolation=interpolation,
            pixel_max=pixel_max,
            mean=tuple(m),
            std=tuple(s),
            stats=stats,
        )

    @classmethod
    def identity(cls, channels: int, size: int) -> Preprocessing:
        """For a model trained from Python on arrays it was given: inputs pass unchanged."""
        return cls(
            channels=channels,
            size=size,
            resize=size,
            mean=(0.0,) * channels,
            std=(1.0,) * channels,
            stats="none recorded: inputs are used as given",
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any, where: str = "preprocessing record") -> Preprocessing:
        try:
            return cls.model_validate(json.loads(data) if isinstance(data, str) else data)
        except (ValidationError, json.JSONDecodeError) as exc:
            message = validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
            raise UnlearnkitError(f"{where} is malformed: {message}") from None

    # -- arithmetic --------------------------------------------------------------------------
    def _stat(self, values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32).view(1, self.channels, 1, 1)

    def normalise_(self, x: torch.Tensor) -> torch.Tensor:
        """In place on float32 ``x`` in pixel units: ``(x - mean) / std``, bit for bit."""
        return x.sub_(self._stat(self.mean)).div_(self._stat(self.std))

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs back to pixel units (for display and tests; not bit-exact)."""
        return x * self._stat(self.std) + self._stat(self.mean)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs -> the nearest 8-bit pixels (what a PNG of them holds)."""
        units = self.denormalise(x)
        return (units * (255.0 / self.pixel_max)).round_().clamp_(0, 255).to(torch.uint8)

    def units(self, pixels: torch.Tensor) -> torch.Tensor:
        """8-bit pixels (uint8) -> float32 pixel units (a new tensor)."""
        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        return pixels.to(torch.float32).div_(255.0 / self.pixel_max)

    def from_uint8(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, size, size) -> model inputs: how an 8-bit image reaches the model."""
        self.check_shape(pixels, "pixels")
        return self.normalise_(self.units(pixels))

    def from_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, C, size, size) in [0, 1] (8-bit value / 255) -> model inputs."""
        self.check_shape(x, "inputs")
        units = x.to(torch.float32, copy=True)
        if self.pixel_max != 1.0:
            units.mul_(self.pixel_max)
        return self.normalise_(units)

    def check_shape(self, x: torch.Tensor, what: str) -> None:
        want = (self.channels, self.size, self.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise UnlearnkitError(
                f"{what} has shape {tuple(x.shape)} but the model takes (N, {want[0]}, "
                f"{want[1]}, {want[2]})"
            )

    # -- images ------------------------------------------------------------------------------
    def image_pixels(self, image: Any) -> torch.Tensor:
        """A PIL image -> uint8 (C, size, size), as every training image was made."""
        return image_pixels(image, self.channels, self.size, self.resize, self.interpolation)


def image_pixels(
    image: Any, channels: int, size: int, resize: int, interpolation: Interpolation = "bilinear"
) -> torch.Tensor:
    """A PIL image -> uint8 (C, size, size): channels, shorter side to ``resize`` (antialiased),
    centre crop; never a squash. The one path for training folders and the service's images."""
    # deferred: torchvision costs ~1.5 s to import, and only image paths need it
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    image = image.convert("L" if channels == 1 else "RGB")
    pixels = F.pil_to_tensor(image)
    if min(pixels.shape[-2:]) != resize:
        mode = InterpolationMode(interpolation)
        pixels = F.resize(pixels, [resize], interpolation=mode, antialias=True)
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = F.center_crop(pixels, [size, size])
    return pixels.contiguous()


@dataclass(frozen=True)
class PixelSource:
    """What a loader knows about its pixels: their units, the image geometry, and the fixed
    per-channel statistics used when there is no public split (never statistics of D)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    note: str
    pixel_max: float = 1.0
    resize: int | None = None
    interpolation: Interpolation = "bilinear"
    # the stored value of a white pixel when the loader keeps integer pixels (uint8): 255 for
    # 8-bit images, 16 for scikit-learn's 4-bit digits; stored value / raw_white * pixel_max
    # is the pixel in the units of mean / std
    raw_white: float = 255.0
