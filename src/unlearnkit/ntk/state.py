"""The NTK state kept next to a checkpoint, and its rank-(k C) Woodbury downdate.

State of the training set D (primal form): A = sum J^T J, b = sum J^T r, H = (A + lambda I)^-1,
the ids of D and which are still alive. Deleting samples with stacked Jacobian rows U (k C x P)
and residuals r_f gives A' = A - U^T U, b' = b - U^T r_f and, by Woodbury,
  H' = H + (U H)^T (I - U H U^T)^-1 (U H),
so a deletion costs O(k C P^2) and never touches D again; deletions compose.
The file is one safetensors file (tensors + JSON metadata) written atomically.

``kernel`` records which NTK the state holds: ``exact`` (C rows per sample) or ``pntk``, the
pseudo-NTK (Mohamadi, Bae, Sutherland, ICML 2023; one row per sample, kernel pNTK (x) I_C, b and
the solutions P x C), which is approximate: its metadata says so (``approximate: true``).
``target_scale`` records the regression targets b was built with (None: one-hot; s:
s (onehot - 1/C), ``jacobian.regression_targets``); a deletion's residuals use the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.models.checkpoint import atomic_save_tensors
from unlearnkit.ntk.files import load_tensors
from unlearnkit.ntk.jacobian import KERNELS, check_kernel
from unlearnkit.ntk.solvers import regularized_inverse

FORMAT = "unlearnkit-ntk-state/1"


@dataclass
class NTKState:
    """Sufficient statistics of the linearized ridge problem on the live part of D."""

    names: list[str]
    shapes: list[list[int]]
    lam: float
    num_classes: int
    gram: torch.Tensor  # A (P x P)
    rhs: torch.Tensor  # b (P,); (P, C) for the pseudo-NTK
    inverse: torch.Tensor  # (A + lambda I)^-1
    ids: torch.Tensor  # ids of D (N,)
    alive: torch.Tensor  # bool (N,)
    # w_D - w0, kept for the paper's update w + (w_Dr - w_D); a function of every sample of D,
    # so it is not saved after deletions unless asked (``save(keep_full=True)``): None then
    solution_full: torch.Tensor | None
    fingerprint: dict[str, str] = field(default_factory=dict)
    kernel: str = "exact"  # "exact" | "pntk" (approximate)
    target_scale: float | None = None  # None: one-hot targets; s: s (onehot - 1/C)

    @classmethod
    def from_gram(
        cls,
        names: list[str],
        shapes: list[list[int]],
        gram: torch.Tensor,
        rhs: torch.Tensor,
        lam: float,
        num_classes: int,
        ids: torch.Tensor,
        fingerprint: dict[str, str],
        kernel: str = "exact",
        target_scale: float | None = None,
    ) -> NTKState:
        if lam <= 0:
            raise UnlearnkitError(f"ridge lambda must be > 0, got {lam}")
        check_kernel(kernel)
        inverse = regularized_inverse(gram, lam)
        return cls(
            list(names),
            [list(s) for s in shapes],
            float(lam),
            int(num_classes),
            gram,
            rhs,
            inverse,
            ids.clone().long(),
            torch.ones(len(ids), dtype=torch.bool),
            inverse @ rhs,
            dict(fingerprint),
            kernel,
            target_scale,
        )

    @property
    def num_params(self) -> int:
        return int(self.rhs.shape[0])

    @property
    def approximate(self) -> bool:
        """True for the pseudo-NTK: not the exact linearized ridge problem."""
        return self.kernel != "exact"

    @property
    def rows_per_sample(self) -> int:
        """Jacobian rows a sample adds to A: C for the exact kernel, 1 for the pseudo-NTK."""
        return self.num_classes if self.kernel == "exact" else 1

    @property
    def solution(self) -> torch.Tensor:
        """w_{live D} - w0 = (A + lambda I)^-1 b."""
        return self.inverse @ self.rhs

    @property
    def deleted_ids(self) -> torch.Tensor:
        return self.ids[~self.alive]

    @property
    def live_ids(self) -> torch.Tensor:
        return self.ids[self.alive]

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Positions of ``ids`` in D; unknown or deleted ids are refused (state unchanged)."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        if ids.numel() == 0:
            raise UnlearnkitError("no sample ids given to delete")
        if torch.unique(ids).numel() != ids.numel():
            dup = next(i for i in ids.tolist() if ids.tolist().count(i) > 1)
            raise UnlearnkitError(f"sample id {dup} is listed twice")
        order = torch.argsort(self.ids)
        where = torch.searchsorted(self.ids[order], ids).clamp_max(len(self.ids) - 1)
        pos = order[where]
        missing = self.ids[pos] != ids
        if bool(missing.any()):
            raise NotFoundError(f"sample id {int(ids[missing][0])} is not in the training set")
        dead = ~self.alive[pos]
        if bool(dead.any()):
            raise ConflictError(f"sample id {int(ids[dead][0])} was already deleted")
        if int(self.alive.sum()) - len(ids) < 1:
            raise UnlearnkitError("deleting these ids would leave no training data")
        return pos

    def downdate(self, ids: torch.Tensor, rows: torch.Tensor, resid: torch.Tensor) -> None:
        """Remove samples ``ids`` whose stacked Jacobian rows are ``rows`` (k C x P; k x P for
        the pseudo-NTK) and residuals ``resid`` (k C,; k x C for the pseudo-NTK). Validates
        first; on any error the state is left as it was."""
        pos = self.positions(ids)
        expect = len(pos) * self.rows_per_sample
        want_resid = (expect,) if self.kernel == "exact" else (expect, self.num_classes)
        if rows.shape != (expect, self.num_params) or tuple(resid.shape) != want_resid:
            raise ValueError(
                f"rows {tuple(rows.shape)} / resid {tuple(resid.shape)} do not "
                f"match {len(pos)} samples x {self.rows_per_sample} rows ({self.kernel} kernel)"
            )
        u = rows.to(self.gram.dtype)
        r = resid.to(self.gram.dtype)
        if u.shape[0] >= self.num_params:
            self._refactor(pos, u, r)
            return
        uh = u @ self.inverse  # (kC, P)
        inner = -(uh @ u.T)
        inner.diagonal().add_(1.0)  # I - U H U^T: positive definite iff A' + lambda I is
        factor, info = torch.linalg.cholesky_ex(inner)
        if int(info) != 0:
            raise UnlearnkitError(
                "downdate is numerically unstable (I - U H U^T not positive "
                "definite); increase lambda or recompute the state"
            )
        correction = torch.cholesky_solve(uh, factor)  # (I - U H U^T)^-1 U H
        new_alive = self.alive.clone()
        new_alive[pos] = False
        # validated and factorised: from here on nothing can fail, so update in place
        # (no new P x P allocations: memory stays at the size of the state)
        self.inverse.addmm_(uh.T, correction)
        self.gram.addmm_(u.T, u, alpha=-1.0)
        self.rhs.sub_(u.T @ r)
        self.alive = new_alive

    def _refactor(self, pos: torch.Tensor, u: torch.Tensor, r: torch.Tensor) -> None:
        """A large downdate (kC >= P rows): subtract U^T U from A and factorise the P x P system
        again, O(P^3) time and O(P^2) memory. The Woodbury form would build a kC x kC matrix
        (measured: 42,000 rows, 14 GB, killed a 24 GB machine) and cost more than this."""
        gram = torch.addmm(self.gram, u.T, u, alpha=-1.0)
        factor, info = torch.linalg.cholesky_ex(
            gram + self.lam * torch.eye(self.num_params, dtype=gram.dtype)
        )
        if int(info) != 0:
            raise UnlearnkitError(
                "downdate is numerically unstable (A - U^T U + lambda I not positive "
                "definite); increase lambda or recompute the state"
            )
        new_alive = self.alive.clone()
        new_alive[pos] = False
        self.inverse = torch.cholesky_inverse(factor)
        self.gram = gram
        self.rhs = self.rhs - u.T @ r
        self.alive = new_alive

    # ---- persistence -------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "names": self.names,
            "shapes": self.shapes,
            "lam": self.lam,
            "num_classes": self.num_classes,
            "fingerprint": self.fingerprint,
            "kernel": self.kernel,
            "approximate": self.approximate,
            "target_scale": self.target_scale,
        }

    def save(self, path: str | Path, keep_full: bool = True) -> None:
        """Write one safetensors file atomically (temp file + rename). After deletions,
        ``keep_full=False`` leaves out ``solution_full`` (w_D - w0 depends on the deleted
        samples; only the paper update needs it): the file then holds nothing computed from
        a deleted sample beyond the downdated sums A and b."""
        tensors = {
            "gram": self.gram,
            "rhs": self.rhs,
            "inverse": self.inverse,
            "ids": self.ids,
            "alive": self.alive.to(torch.uint8),
        }
        if self.solution_full is not None and (keep_full or bool(self.alive.all())):
            tensors["solution_full"] = self.solution_full
        atomic_save_tensors(Path(path), tensors, {"ntk": json.dumps(self.metadata())})

    @classmethod
    def load(cls, path: str | Path, expect: dict[str, str] | None = None) -> NTKState:
        """Read a state; ``expect`` (fingerprint parts) must match or a ConflictError is raised."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"NTK state {path} does not exist (run `ntk precompute` first)")
        try:
            tensors, raw = load_tensors(path)
            meta = json.loads(raw["ntk"]) if "ntk" in raw else {}
        except (SafetensorError, OSError, json.JSONDecodeError, RuntimeError) as exc:
            raise UnlearnkitError(f"NTK state {path} is corrupt or unreadable: {exc}") from None
        if meta.get("format") != FORMAT:
            raise UnlearnkitError(f"{path} is not an unlearnkit NTK state")
        kernel = meta.get("kernel", "exact")  # states written before kernels were recorded
        if kernel not in KERNELS:
            raise UnlearnkitError(f"{path}: unknown NTK kernel {kernel!r}")
        state = cls(
            meta["names"],
            meta["shapes"],
            float(meta["lam"]),
            int(meta["num_classes"]),
            tensors["gram"],
            tensors["rhs"],
            tensors["inverse"],
            tensors["ids"],
            tensors["alive"].bool(),
            tensors.get("solution_full"),
            {"target": "onehot", **meta["fingerprint"]},  # before targets were recorded
            kernel,
            meta.get("target_scale"),
        )
        if expect is not None:
            state.check(expect, path)
        return state

    def check(self, expect: dict[str, str], where: str | Path = "NTK state") -> None:
        """Refuse a stale state: every expected fingerprint part must match."""
        for key, value in expect.items():
            have = self.fingerprint.get(key)
            if have != value:
                raise ConflictError(
                    f"{where} is stale: its {key} is {have!r} but the current "
                    f"one is {value!r}; run `ntk precompute` again"
                )
