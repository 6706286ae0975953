"""Bearer tokens with scopes, from a YAML/JSON file or the UNLEARNKIT_TOKENS variable.

A token grants scopes ``predict``, ``delete`` and/or ``admin`` (admin implies the other two),
until its optional ``expires_at`` (ISO 8601; without a zone: UTC), after which it is refused.
Tokens are compared by their SHA-256 digests with ``hmac.compare_digest`` against every
configured token, so the time taken says nothing about how much of a guess was right.

Only digests are kept in memory. A token file may hold plain tokens or ``sha256:<64 hex>``
digests of them (``token_digest`` makes one), so the file need not hold any secret. A store read
from a file notices when the file changes (its mtime, size or inode, checked on every lookup)
and on ``reload()`` (``serve`` calls it on SIGHUP): the next request sees the new tokens, so a
removed token is refused from then on. A file that cannot be read or parsed keeps the tokens
in force (logged), so a half-written file never locks everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearnkit.errors import UnlearnkitError

Scope = Literal["predict", "delete", "admin"]
ENV_VAR = "UNLEARNKIT_TOKENS"
HASH_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
log = logging.getLogger("unlearnkit.service")


class TokenSpec(BaseModel):
    """One client: a name (recorded in the ledger), its secret (or ``sha256:`` + the hex
    digest of it) and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token: str = Field(min_length=16, max_length=512)
    scopes: list[Scope] = Field(min_length=1)
    expires_at: datetime | None = Field(
        None, description="ISO 8601 time after which the token is refused (no zone: UTC)"
    )

    def expiry(self) -> float | None:
        """``expires_at`` as a Unix time (None: never)."""
        if self.expires_at is None:
            return None
        at = self.expires_at
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()

    @field_validator("token")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("token must be printable ASCII without spaces")
        if value.startswith(HASH_PREFIX) and not _HEX64.match(value[len(HASH_PREFIX) :]):
            raise ValueError("a hashed token is 'sha256:' and 64 lowercase hex digits")
        return value

    def digest(self) -> bytes:
        if self.token.startswith(HASH_PREFIX):
            return bytes.fromhex(self.token[len(HASH_PREFIX) :])
        return _digest(self.token)


def token_digest(token: str) -> str:
    """What a token file may hold instead of the token: ``sha256:<hex digest>``."""
    return HASH_PREFIX + _digest(token).hex()


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSpec] = Field(min_length=1)


class Principal(BaseModel):
    """Who made a request."""

    name: str
    scopes: frozenset[str]
    expires_at: float | None = None  # Unix time; None: never

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """Looks a presented token up in constant time per configured token."""

    def __init__(self, specs: list[TokenSpec], path: str | Path | None = None) -> None:
        """``path``: the file the specs came from; given, the store follows its changes."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()  # reentrant: a SIGHUP reload may interrupt a reload
        self._entries = self._build(specs)
        self._seen = self._file_state()
        self.reloads = 0  # successful reloads since start

    @staticmethod
    def _build(specs: list[TokenSpec]) -> tuple[tuple[bytes, Principal], ...]:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UnlearnkitError("token names must be unique")
        digests = [s.digest() for s in specs]
        if len(set(digests)) != len(specs):
            raise UnlearnkitError("two token entries share the same secret")
        return tuple(
            (d, Principal(name=s.name, scopes=frozenset(s.scopes), expires_at=s.expiry()))
            for d, s in zip(digests, specs, strict=True)
        )

    def identify(self, presented: str) -> Principal | None:
        if self.path is not None and self._file_state() != self._seen:
            self.reload()
        wanted = _digest(presented)
        found = None
        for digest, principal in self._entries:  # no early exit: constant work per token
            if hmac.compare_digest(digest, wanted):
                found = principal
        if found is not None and found.expires_at is not None and time.time() >= found.expires_at:
            return None  # expired: refused like an unknown token
        return found

    # -- following the file ------------------------------------------------------------------
    def _file_state(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def reload(self) -> bool:
        """Read the file again and swap the tokens in; False (old tokens kept, logged) when it
        cannot be read or is not a valid token file. Without a file: nothing to do (False)."""
        if self.path is None:
            return False
        with self._lock:
            state = self._file_state()
            self._seen = state  # a bad file is not retried until it changes again
            try:
                entries = self._build(self._read_specs(self.path))
            except UnlearnkitError as exc:
                log.error("token file not reloaded, the previous tokens stay in force: %s", exc)
                return False
            self._entries = entries
            self.reloads += 1
        log.info("token file %s reloaded: %d tokens", self.path, len(entries))
        return True

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _specs(text: str, where: str) -> list[TokenSpec]:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UnlearnkitError(f"{where}: not valid YAML/JSON ({exc})") from None
        try:
            spec = TokenFile.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "tokens"
            raise UnlearnkitError(f"{where}: {field}: {err['msg']}") from None
        return spec.tokens

    @classmethod
    def _read_specs(cls, path: Path) -> list[TokenSpec]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise UnlearnkitError(f"--tokens {path}: cannot read ({why})") from None
        return cls._specs(text, f"--tokens {path}")

    @classmethod
    def parse(cls, text: str, where: str) -> TokenStore:
        return cls(cls._specs(text, where))

    @classmethod
    def from_sources(cls, path: str | Path | None = None) -> TokenStore:
        """``path`` if given (followed for changes), else the UNLEARNKIT_TOKENS variable (the
        same YAML/JSON text, read once)."""
        if path is not None:
            return cls(cls._read_specs(Path(path)), path)
        text = os.environ.get(ENV_VAR)
        if not text:
            raise UnlearnkitError(
                f"no API tokens configured: pass --tokens FILE or set {ENV_VAR} "
                '(e.g. {"tokens": [{"name": "ops", "token": "...", "scopes": ["admin"]}]})'
            )
        return cls.parse(text, ENV_VAR)


def reload_on_sighup(store: TokenStore) -> bool:
    """Make SIGHUP reload ``store``'s file (main thread only); False if there is nothing to
    reload or no SIGHUP on this platform."""
    if store.path is None or not hasattr(signal, "SIGHUP"):
        return False
    signal.signal(signal.SIGHUP, lambda *_: store.reload())
    return True


def tokens_json(specs: list[dict[str, object]]) -> str:
    """Helper for tests and scripts: the text of a token file."""
    return json.dumps({"tokens": specs})
