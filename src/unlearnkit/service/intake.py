"""Accepting deletion requests: validation, idempotency, claims, the durable write.

A request is checked before anything is written (``check_sample_ids``). Then, in one critical
section: a known ``(client, Idempotency-Key)`` returns its stored event; an id that another
request already deletes is a conflict; otherwise the event is written to the ledger and handed
to the applier (``Applier.record``), and its ids are claimed. A deletion that fails releases
its claims (the applier calls ``Claims.release``), so the ids can be requested again.
"""

from __future__ import annotations

import threading

from unlearnkit.errors import ConflictError, NotFoundError, UnlearnkitError
from unlearnkit.service.applier import Applier
from unlearnkit.service.auth import Principal
from unlearnkit.service.ledger import Event, Ledger, payload_hash
from unlearnkit.service.served import ServedModel


def check_sample_ids(model: ServedModel, ids: list[int], max_ids: int) -> list[int]:
    """The ids, sorted, if the request may be written: not empty, not too many, no repeats,
    every id in the model's training set."""
    if not ids:
        raise UnlearnkitError("sample_ids is empty")
    if len(ids) > max_ids:
        raise UnlearnkitError(f"sample_ids has {len(ids)} ids; at most {max_ids} per request")
    seen: set[int] = set()
    for i in ids:
        if i in seen:
            raise UnlearnkitError(f"sample id {i} is listed twice")
        seen.add(i)
        if not model.known(i):
            raise NotFoundError(f"sample id {i} is not in the training set of this model")
    return sorted(ids)


class Claims:
    """Sample id -> the request that deletes it (accepted or applied; failed ones released)."""

    def __init__(self, claimed: dict[int, str]) -> None:
        self._lock = threading.Lock()
        self._claimed = dict(claimed)

    def check(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                if i in self._claimed:
                    raise ConflictError(
                        f"sample id {i} is already deleted (request {self._claimed[i]})"
                    )

    def take(self, ids: list[int], request_id: str) -> None:
        with self._lock:
            for i in ids:
                self._claimed[i] = request_id

    def release(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                self._claimed.pop(i, None)


class Intake:
    def __init__(self, ledger: Ledger, applier: Applier, claims: Claims) -> None:
        self._ledger, self._applier, self._claims = ledger, applier, claims
        self._lock = threading.Lock()  # idempotency check + claim check + ledger write

    def accept(
        self, who: Principal, ids: list[int], key: str | None
    ) -> tuple[Event, threading.Event | None]:
        """Durably accept a deletion of checked ``ids``: the event and, if it is new, what is
        set once it is applied (``None``: the key was known, its stored event is returned)."""
        payload = {"sample_ids": ids}
        with self._lock:
            if key is not None:
                old = self._ledger.find(who.name, key)
                if old is not None:
                    if old.request_hash != payload_hash(payload):
                        raise ConflictError(
                            f"Idempotency-Key {key!r} was already used for a different request"
                        )
                    return old, None
            self._claims.check(ids)
            event, applied = self._applier.record("deletion", who.name, payload, key)
            self._claims.take(ids, event.request_id)
        return event, applied
