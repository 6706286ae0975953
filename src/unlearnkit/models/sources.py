"""Where a model name leads: unlearnkit's own registry, timm, torchvision or the user's code.

``smallcnn`` (a registered name, built in or from an ``unlearnkit.models`` entry point),
``timm:NAME`` (``timm.create_model``), ``torchvision:NAME`` (``torchvision.models.get_model``),
``module:package.module:factory`` (a function of the user's). The prefix picks a source from
:data:`SOURCES`; every source builds with random init (no download, ever: pretrained weights
come from a local ``--weights`` file). A name is all a worker process or a Ray task needs to
rebuild the same model, so an :class:`~unlearnkit.models.Architecture` holds only the name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import timm
import torchvision.models
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.channels import adapt_first_conv
from unlearnkit.models.registry import MODELS
from unlearnkit.registry import Registry

SHAPE_ARGS = ("num_classes", "in_chans", "image_size")
"""What unlearnkit passes to a registered or user factory (when it takes them)."""

DOWNLOADS = ("pretrained", "weights", "pretrained_cfg_overlay")
"""Options that would fetch weights from a hub: refused (use a local ``--weights`` file)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _refuse_downloads(options: dict[str, Any]) -> None:
    asked = [k for k in DOWNLOADS if k in options]
    if asked:
        raise UnlearnkitError(
            f"model option {asked[0]!r} is not taken: nothing is downloaded; start from a "
            "local checkpoint with --weights FILE"
        )


def _with_size(build: Callable[..., nn.Module], key: str, size: int, options: dict) -> nn.Module:
    """Build with the input size as ``key`` (ViTs need it); retry without for models that
    take no such argument (CNNs)."""
    if key in options:
        return build()
    try:
        return build(**{key: size})
    except TypeError as exc:
        if key not in str(exc):
            raise
        return build()


class ModelSource(ABC):
    """One library (or registry) models come from."""

    summary: ClassVar[str] = ""
    pattern: ClassVar[str] = ""

    @abstractmethod
    def names(self) -> list[str]:
        """Known names (for listings and 'closest names'; may be empty)."""

    def exists(self, name: str) -> bool:
        """Whether ``name`` names a model here (checked before any work)."""
        return name in self.names()

    @abstractmethod
    def build(
        self, name: str, num_classes: int, in_chans: int, image_size: int, options: dict
    ) -> nn.Module: ...


SOURCES: Registry[ModelSource] = Registry("model source")


class RegisteredSource(ModelSource):
    """unlearnkit's registry: built-in names and ``unlearnkit.models`` entry points."""

    summary = "registered in unlearnkit (built in, or a package's unlearnkit.models entry point)"

    def names(self) -> list[str]:
        return MODELS.names()

    def exists(self, name: str) -> bool:
        return name in MODELS

    def build(
        self, name: str, num_classes: int, in_chans: int, image_size: int, options: dict
    ) -> nn.Module:
        factory = MODELS.get(name)
        params = inspect.signature(factory).parameters
        accepted = set(params) - set(SHAPE_ARGS)
        unknown = sorted(set(options) - accepted)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if unknown and not takes_any:
            raise UnlearnkitError(
                f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(sorted(accepted)) or 'none'}"
            )
        return factory(num_classes=num_classes, in_chans=in_chans, image_size=image_size, **options)


@SOURCES.register("timm")
class TimmSource(ModelSource):
    summary = "any timm model (timm.create_model, random init; options: its arguments)"
    pattern = "timm:NAME"

    def names(self) -> list[str]:
        return timm.list_models()

    def exists(self, name: str) -> bool:
        return bool(timm.is_model(name))

    def build(
        self, name: str, num_classes: int, in_chans: int, image_size: int, options: dict
    ) -> nn.Module:
        _refuse_downloads(options)

        def make(**size: int) -> nn.Module:
            return timm.create_model(
                name,
                pretrained=False,
                num_classes=num_classes,
                in_chans=in_chans,
                **options,
                **size,
            )

        try:
            return _with_size(make, "img_size", image_size, options)
        except TypeError as exc:
            raise UnlearnkitError(f"timm model {name!r}: {_first_line(exc)}") from None


@SOURCES.register("torchvision")
class TorchvisionSource(ModelSource):
    summary = (
        "a torchvision classification model (torchvision.models.get_model, weights=None); "
        "a first convolution for other than 3 channels is refitted (see README)"
    )
    pattern = "torchvision:NAME"

    def names(self) -> list[str]:
        return torchvision.models.list_models(module=torchvision.models)

    def build(
        self, name: str, num_classes: int, in_chans: int, image_size: int, options: dict
    ) -> nn.Module:
        _refuse_downloads(options)

        def make(**size: int) -> nn.Module:
            return torchvision.models.get_model(
                name, weights=None, num_classes=num_classes, **options, **size
            )

        try:
            model = _with_size(make, "image_size", image_size, options)
        except (TypeError, ValueError) as exc:
            raise UnlearnkitError(f"torchvision model {name!r}: {_first_line(exc)}") from None
        adapt_first_conv(model, in_chans)
        return model


@SOURCES.register("module")
class ModuleSource(ModelSource):
    summary = (
        "your own factory: it is called with the options and, where it takes them, "
        "num_classes / in_chans / image_size"
    )
    pattern = "module:package.module:factory"

    def names(self) -> list[str]:
        return []

    def factory(self, name: str) -> Callable[..., Any]:
        module_name, sep, attr = name.partition(":")
        if not sep or not module_name or not attr:
            raise UnlearnkitError(
                f"model 'module:{name}' must look like module:package.module:factory"
            )
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the user's code: any failure is theirs to read, in one line
            raise UnlearnkitError(
                f"model 'module:{name}': cannot import {module_name!r}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise UnlearnkitError(f"model 'module:{name}': {module_name} has no callable {attr!r}")
        return factory

    def exists(self, name: str) -> bool:
        """An unimportable module or a missing factory is its own one-line error."""
        self.factory(name)
        return True

    def build(
        self, name: str, num_classes: int, in_chans: int, image_size: int, options: dict
    ) -> nn.Module:
        factory = self.factory(name)
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        given = dict(zip(SHAPE_ARGS, (num_classes, in_chans, image_size), strict=True))
        shape = {k: v for k, v in given.items() if takes_any or k in params}
        try:
            model = factory(**shape, **options)
        except TypeError as exc:
            raise UnlearnkitError(f"model 'module:{name}': {_first_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise UnlearnkitError(
                f"model 'module:{name}' returned {type(model).__name__}, not a torch nn.Module"
            )
        if "in_chans" not in shape:
            adapt_first_conv(model, in_chans)
        return model


def resolve(name: str) -> tuple[ModelSource, str]:
    """The source a model name belongs to, and the name within it."""
    prefix, sep, rest = name.partition(":")
    if not sep:
        return RegisteredSource(), name
    if prefix not in SOURCES:
        raise UnlearnkitError(
            f"unknown model source {prefix!r} in {name!r}; sources: "
            f"{', '.join(f'{p}:' for p in SOURCES.names())} or a registered name"
        )
    return SOURCES.get(prefix)(), rest


def _candidates(source: ModelSource) -> list[tuple[str, str]]:
    """(name within a source, full name) pairs to suggest from for an unknown name."""
    if isinstance(source, RegisteredSource):
        pairs = [(n, n) for n in source.names()]
        for prefix in SOURCES.names():
            pairs += [(n, f"{prefix}:{n}") for n in SOURCES.get(prefix)().names()]
        return pairs
    prefix = next(p for p in SOURCES.names() if isinstance(source, SOURCES.get(p)))
    return [(n, f"{prefix}:{n}") for n in source.names()]


def closest_names(name: str, limit: int = 5) -> list[str]:
    """Full model names closest to ``name`` (difflib), registered names first."""
    source, bare = resolve(name)
    pairs = _candidates(source)
    close = difflib.get_close_matches(bare, list(dict.fromkeys(b for b, _ in pairs)), n=limit)
    return [full for b in close for inner, full in pairs if inner == b][:limit]


def check_model_name(name: str) -> str:
    """``name`` if it can be built; else one line with the closest names."""
    source, bare = resolve(name)
    if not source.exists(bare):
        close = closest_names(name)
        hint = f"closest: {', '.join(close)}" if close else "no close name"
        raise UnlearnkitError(
            f"unknown model {name!r}; {hint} (`unlearnkit models` lists the sources)"
        )
    return name


def build_from_source(
    name: str, num_classes: int, in_chans: int, image_size: int, options: dict[str, Any]
) -> nn.Module:
    source, bare = resolve(name)
    check_model_name(name)
    return source.build(bare, num_classes, in_chans, image_size, dict(options))


def catalogue() -> list[tuple[str, str]]:
    """(name or pattern, what it is) for every registered model and every source."""
    rows = []
    for name in MODELS.names():
        provider = MODELS.provider(name)
        doc = (inspect.getdoc(MODELS.get(name)) or "").split("\n\n")[0].replace("\n", " ")
        rows.append((name, f"{doc} (plugin: {provider})" if provider else doc))
    for prefix in SOURCES.names():
        source = SOURCES.get(prefix)
        rows.append((source.pattern, source.summary))
    return rows
