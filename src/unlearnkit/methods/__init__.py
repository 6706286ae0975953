"""Unlearning methods: one file each, one registry (``create_method("salun", lr=...)``)."""

from __future__ import annotations

from unlearnkit.methods import (  # noqa: F401 - each import registers a method
    fast_ntk,
    finetune,
    l1_sparse,
    neggrad,
    neggrad_plus,
    ntk,
    random_label,
    retrain,
    rum,
    salun,
    scrub,
)
from unlearnkit.methods.base import (
    METHODS,
    UnlearningContext,
    UnlearningMethod,
    create_method,
    default_method_names,
    method_defaults,
)

__all__ = [
    "METHODS",
    "UnlearningContext",
    "UnlearningMethod",
    "create_method",
    "default_method_names",
    "method_defaults",
]
