"""Simulated U-LiRA inputs with a known answer, to measure how often an interval covers 0.5.

A model's logit-scaled confidence on forget example j is

    phi = mu_j + model effect + noise,   model effect ~ N(0, model_sd^2) shared by all the
                                         model's forget examples, noise ~ N(0, sd_j^2)

with mu_j and sd_j drawn per example (examples differ in difficulty and in spread). Under the
null (``shift = 0``) the "unlearned" model of every pair is drawn exactly like its reference,
as an exact method's would be; ``shift`` adds a constant to every unlearned phi (an inexact
method that leaves the examples slightly more confident).

* ``fixed`` (one forget class): every pair forgets every target, and the model effect is strong
  (a model more or less confident on the whole class).
* ``random`` (a random share): the audit's protocol, each pair forgets a random half of the
  targets (NaN elsewhere), and the shared effect is weak.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Array = np.ndarray


class NullModel(BaseModel):
    """The generator's constants (defaults: ``KIND_DEFAULTS``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed", "random"]
    targets: int = Field(100, ge=2, description="forget examples (random: the pool of 2m)")
    model_sd: float = Field(ge=0, description="sd of the per-model effect shared by its examples")
    noise_sd: float = Field(1.0, gt=0, description="median per-example noise sd")
    noise_spread: float = Field(0.3, ge=0, description="sd of log(noise sd) over examples")
    example_sd: float = Field(2.0, ge=0, description="sd of the examples' mean phi")
    mean: float = Field(6.0, description="mean phi of a forget example")
    shift: float = Field(0.0, description="added to every unlearned phi (0: the null)")


# Calibrated on the measured K study (docs/audit.md; digits, smallcnn + bn, the control's AUC
# over draws from a pool of retrained models): class 3 (100 examples) sd 0.141 at K = 8 and
# 0.077 at K = 32, mean 0.44-0.47; random 10% (202 targets) sd 0.032 at K = 8, 0.020 at K = 16.
# These constants give 0.140 / 0.076 (mean 0.45 / 0.47) and 0.027 / 0.021 (mean 0.50).
KIND_DEFAULTS = {
    "fixed": NullModel(kind="fixed", targets=100, model_sd=3.0),
    "random": NullModel(kind="random", targets=200, model_sd=0.7),
}


def simulate_pairs(model: NullModel, k: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """(phi_in, phi_out), each (k pairs, targets), for one simulated audit."""
    mu = rng.normal(model.mean, model.example_sd, model.targets)
    sd = model.noise_sd * np.exp(rng.normal(0.0, model.noise_spread, model.targets))

    def draw() -> Array:
        effect = rng.normal(0.0, model.model_sd, (k, 1))
        return mu + effect + sd * rng.normal(size=(k, model.targets))

    phi_in, phi_out = draw() + model.shift, draw()
    if model.kind == "random":  # pair k forgets a random half of the targets
        half = model.targets // 2
        order = np.argsort(rng.random((k, model.targets)), axis=1)
        unseen = np.ones((k, model.targets), bool)
        np.put_along_axis(unseen, order[:, :half], False, axis=1)
        phi_in[unseen], phi_out[unseen] = np.nan, np.nan
    return phi_in, phi_out


__all__ = ["KIND_DEFAULTS", "NullModel", "simulate_pairs"]
