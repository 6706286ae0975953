"""Where a classifier's head is: named by the user, timm's ``get_classifier``, torchvision's
``fc`` / ``classifier`` / ``heads`` (then the last ``nn.Linear`` inside), or the last layer of
a plain ``nn.Sequential``.

Every part of unlearnkit that needs the head (PEFT selection, a new head for the private task,
a checkpoint loaded without its head, S3T's blocks) asks :func:`find_head`, so a model from any
library, or one the user wrote, works once its head is found or named (:func:`name_head`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from unlearnkit.errors import UnlearnkitError

HEAD_ATTR = "unlearnkit_head"
"""The attribute :func:`name_head` sets: the head's module path (a plain string, so it survives
``copy.deepcopy`` and pickling)."""

CONVENTIONAL_ATTRS = ("fc", "classifier", "heads", "head")
"""torchvision's head attributes (ResNet, VGG / MobileNet / EfficientNet, ViT, Swin)."""


@dataclass(frozen=True)
class Head:
    """The head module and its path in the model (``""`` when the model is the head)."""

    path: str
    module: nn.Module

    def parameter_names(self) -> list[str]:
        prefix = f"{self.path}." if self.path else ""
        return [prefix + n for n, _ in self.module.named_parameters()]

    def owns(self, key: str) -> bool:
        """Whether a state-dict key belongs to the head."""
        return not self.path or key.startswith(self.path + ".")


def _path_of(model: nn.Module, module: nn.Module) -> str | None:
    return next((p for p, m in model.named_modules() if m is module), None)


def _named(model: nn.Module) -> str | None:
    path = getattr(model, HEAD_ATTR, None)
    return path if isinstance(path, str) else None


def _get_classifier(model: nn.Module) -> str | None:
    get = getattr(model, "get_classifier", None)
    if not callable(get):
        return None
    module = get()
    return _path_of(model, module) if isinstance(module, nn.Module) else None


def _conventional(model: nn.Module) -> str | None:
    for attr in CONVENTIONAL_ATTRS:
        if isinstance(getattr(model, attr, None), nn.Module):
            return attr
    return None


def _sequential_tail(model: nn.Module) -> str | None:
    """A plain ``nn.Sequential`` that ends in a Linear layer: that layer."""
    if isinstance(model, nn.Sequential) and len(model) and isinstance(model[-1], nn.Linear):
        return str(len(model) - 1)
    return None


FINDERS: tuple[Callable[[nn.Module], str | None], ...] = (
    _named,
    _get_classifier,
    _conventional,
    _sequential_tail,
)
"""Tried in order; the first that answers decides (a named head always wins)."""


def _last_linear(path: str, module: nn.Module) -> Head:
    """A container head (torchvision's ``classifier`` Sequential) resolves to its last Linear."""
    if isinstance(module, nn.Linear):
        return Head(path, module)
    linears = [(p, m) for p, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return Head(path, module)
    sub, linear = linears[-1]
    return Head(f"{path}.{sub}" if path else sub, linear)


def find_head(model: nn.Module) -> Head:
    """The classifier head; a one-line error that says how to name it when none is found."""
    for finder in FINDERS:
        path = finder(model)
        if path is None:
            continue
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            raise UnlearnkitError(
                f"{type(model).__name__} has no module {path!r} to use as its head"
            ) from None
        return _last_linear(path, module)
    linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear)][-3:]
    hint = f" (its last Linear layers: {', '.join(linears)})" if linears else ""
    raise UnlearnkitError(
        f"cannot find the classifier head of {type(model).__name__}: name it with --head NAME "
        f"(Python: name_head(model, NAME)){hint}"
    )


def name_head(model: nn.Module, path: str) -> nn.Module:
    """Mark the module at ``path`` as ``model``'s head (checked now); returns ``model``."""
    try:
        model.get_submodule(path)
    except AttributeError:
        top = ", ".join(n for n, _ in model.named_children())
        raise UnlearnkitError(
            f"{type(model).__name__} has no module {path!r} to use as its head "
            f"(its top-level modules: {top or 'none'})"
        ) from None
    object.__setattr__(model, HEAD_ATTR, path)
    return model


def replace_head(model: nn.Module, num_classes: int) -> bool:
    """A new Linear head when the found one has another number of outputs; True if replaced."""
    head = find_head(model)
    old = head.module
    if not isinstance(old, nn.Linear) or old.out_features == num_classes:
        return False
    if not head.path:
        raise UnlearnkitError("the model is a single Linear layer; nothing to put a head on")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    parent_path, _, child = head.path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, new)
    return True
