"""Deletion service: an HTTP API that serves predictions and honours deletion requests.

``unlearnkit serve --from DIR`` (see ``unlearnkit.cli.serve``); the pieces: ``ledger`` (SQLite,
the source of truth), ``served`` (the ServedModel protocol and its registry), ``exact`` /
``approximate`` (adapters), ``snapshots`` (files on disk), ``engine`` (``DeletionService``, the
coordinator) over ``intake``, ``applier``, ``changes``, ``replay``, ``snapshotter``,
``retrainer``, ``model_lock`` and ``status``; ``app`` (FastAPI), ``auth``, ``ratelimit``,
``metrics`` (prometheus_client), ``server`` (uvicorn settings, TLS); ``record`` (the same ledger
and snapshots, read and appended by the CLI) under ``writer_lock`` (one writer per directory).
"""

from unlearnkit.service import approximate as _approximate  # noqa: F401  (registers it)
from unlearnkit.service import exact as _exact  # noqa: F401  (registers "exact")
from unlearnkit.service import static as _static  # noqa: F401  (registers "static")
from unlearnkit.service.auth import TokenStore
from unlearnkit.service.config import ServiceConfig
from unlearnkit.service.engine import DeletionService
from unlearnkit.service.served import SERVED_MODELS, ServedModel, detect_mode, load_served

__all__ = [
    "SERVED_MODELS",
    "DeletionService",
    "ServedModel",
    "ServiceConfig",
    "TokenStore",
    "detect_mode",
    "load_served",
]
