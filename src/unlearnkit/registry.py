"""One registry pattern for methods, datasets, models, proxies and forget-set selectors.

Modelled on timm's ``register_model`` / ``create_model``: a decorator records a factory under a
name and ``create(name, **kwargs)`` builds it. Unknown names fail with the list of valid ones.

A registry may also take third-party entries from a Python entry-point group (``unlearnkit.models``,
``unlearnkit.methods``): an installed package declares ``name = "package.module:object"`` and
the object is registered under ``name`` the first time a name is missing or the names are
listed. A plugin that fails to load is skipped with a one-line warning, never a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from unlearnkit.errors import UnlearnkitError

T = TypeVar("T")

log = logging.getLogger("unlearnkit.plugins")

PluginCheck = Callable[[Any], str | None]
"""Says why a loaded plugin object is not acceptable (``None``: it is)."""


class Registry(Generic[T]):
    """A named collection of factories of one kind (``kind`` appears in error messages).

    ``entry_points``: the entry-point group plugins register in (loaded lazily, once);
    ``plugin_check`` rejects a plugin object that is not of the right kind."""

    def __init__(
        self,
        kind: str,
        entry_points: str | None = None,
        plugin_check: PluginCheck | None = None,
    ) -> None:
        self.kind = kind
        self.entry_points = entry_points
        self._plugin_check = plugin_check
        self._entries: dict[str, Callable[..., T]] = {}
        self._plugins: dict[str, str] = {}  # name -> the distribution that provides it
        self._plugins_loaded = entry_points is None

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def load_plugins(self) -> None:
        """Register every entry point of the group (once); failures are one-line warnings."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_points or ""):
            dist = ep.dist.name if ep.dist is not None else "?"
            where = f"{self.kind} plugin {ep.name!r} ({ep.value}, from {dist})"
            try:
                obj = ep.load()
            except Exception as exc:  # any failure of third-party code: skip it, say so
                first = (str(exc).strip().splitlines() or [""])[0]
                log.warning("unlearnkit: skipped %s: %s: %s", where, type(exc).__name__, first)
                continue
            if self._entries.get(ep.name) is obj:  # it registered itself on import
                self._plugins[ep.name] = dist
                continue
            reason = "the name is taken" if ep.name in self._entries else None
            reason = reason or (self._plugin_check(obj) if self._plugin_check else None)
            if reason is not None:
                log.warning("unlearnkit: skipped %s: %s", where, reason)
                continue
            self._entries[ep.name] = obj
            self._plugins[ep.name] = dist

    def provider(self, name: str) -> str | None:
        """The distribution a plugin entry comes from (``None``: built in)."""
        self.load_plugins()
        return self._plugins.get(name)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise UnlearnkitError(f"unknown {self.kind} {name!r}; choose one of: {valid}") from None

    def create(self, name: str, /, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
