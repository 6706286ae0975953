"""Bearer tokens with scopes, from a YAML/JSON file or the UNLEARNKIT_TOKENS variable.

A token grants scopes ``predict``, ``delete`` and/or ``admin`` (admin implies the other two).
Tokens are compared by their SHA-256 digests with ``hmac.compare_digest`` against every
configured token, so the time taken says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearnkit.errors import UnlearnkitError

Scope = Literal["predict", "delete", "admin"]
ENV_VAR = "UNLEARNKIT_TOKENS"


class TokenSpec(BaseModel):
    """One client: a name (recorded in the ledger), its secret and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token: str = Field(min_length=16, max_length=512)
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("token")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("token must be printable ASCII without spaces")
        return value


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSpec] = Field(min_length=1)


class Principal(BaseModel):
    """Who made a request."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """Looks a presented token up in constant time per configured token."""

    def __init__(self, specs: list[TokenSpec]) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UnlearnkitError("token names must be unique")
        if len({s.token for s in specs}) != len(specs):
            raise UnlearnkitError("two token entries share the same secret")
        self._entries = [
            (_digest(s.token), Principal(name=s.name, scopes=frozenset(s.scopes))) for s in specs
        ]

    def identify(self, presented: str) -> Principal | None:
        wanted = _digest(presented)
        found = None
        for digest, principal in self._entries:  # no early exit: constant work per token
            if hmac.compare_digest(digest, wanted):
                found = principal
        return found

    @classmethod
    def parse(cls, text: str, where: str) -> TokenStore:
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
        return cls(spec.tokens)

    @classmethod
    def from_sources(cls, path: str | Path | None = None) -> TokenStore:
        """``path`` if given, else the UNLEARNKIT_TOKENS variable (the same YAML/JSON text)."""
        if path is not None:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise UnlearnkitError(f"--tokens {path}: cannot read ({exc.strerror})") from None
            return cls.parse(text, f"--tokens {path}")
        text = os.environ.get(ENV_VAR)
        if not text:
            raise UnlearnkitError(
                f"no API tokens configured: pass --tokens FILE or set {ENV_VAR} "
                '(e.g. {"tokens": [{"name": "ops", "token": "...", "scopes": ["admin"]}]})'
            )
        return cls.parse(text, ENV_VAR)


def tokens_json(specs: list[dict[str, object]]) -> str:
    """Helper for tests and scripts: the text of a token file."""
    return json.dumps({"tokens": specs})
