"""A flat view of a chosen set of parameters: the coordinate system of the NTK solves.

Jacobians, Gram matrices and solutions are vectors over the P trainable scalars; ``ParamSpace``
fixes their order (model order of ``names``) and converts between flat vectors and named tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError


@dataclass(frozen=True)
class ParamSpace:
    """Names, shapes and flat offsets of the parameters the NTK engine differentiates."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_model(cls, model: nn.Module, names: list[str] | tuple[str, ...]) -> ParamSpace:
        params = dict(model.named_parameters())
        unknown = [n for n in names if n not in params]
        if unknown:
            raise UnlearnkitError(f"parameter {unknown[0]!r} is not in the model")
        if not names:
            raise UnlearnkitError("the NTK needs at least one trainable parameter")
        return cls(tuple(names), tuple(tuple(params[n].shape) for n in names))

    @property
    def sizes(self) -> list[int]:
        return [int(torch.Size(s).numel()) for s in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def flatten(
        self, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Concatenate the named tensors into one vector (P,)."""
        flat = torch.cat([tensors[n].detach().reshape(-1) for n in self.names])
        return flat if dtype is None else flat.to(dtype)

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a vector (P,) back into named tensors of the right shapes."""
        if vector.shape != (self.numel,):
            raise ValueError(f"expected a vector of {self.numel} values, got {tuple(vector.shape)}")
        parts = vector.split(self.sizes)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def flatten_jacobian(self, jac: Mapping[str, torch.Tensor], lead: int) -> torch.Tensor:
        """Per-name Jacobians (``lead`` leading dims, then the parameter shape) -> (..., P)."""
        pieces = []
        for n in self.names:
            j = jac[n]
            pieces.append(j.reshape(*j.shape[:lead], -1))
        return torch.cat(pieces, dim=-1)


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """Content hash of a state dict (names, dtypes, shapes, values): detects a stale NTK state."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().contiguous().cpu()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
