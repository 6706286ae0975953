"""Request and response bodies of the HTTP API (pydantic v2; they make the OpenAPI docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator


class PredictRequest(BaseModel):
    """Either ``inputs`` (numbers shaped N x C x H x W, preprocessed like the training data) or
    ``images`` (base64 PNG/JPEG; converted to the model's channels and size, scaled to [0, 1])."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] | None = Field(None, description="nested arrays, N x C x H x W")
    images: list[str] | None = Field(None, description="base64-encoded images")

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.inputs is None) == (self.images is None):
            raise ValueError("give exactly one of 'inputs' or 'images'")
        return self


class PredictResponse(BaseModel):
    probabilities: list[list[float]]
    predictions: list[int]
    model_version: int


class DeletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_ids: list[StrictInt] = Field(min_length=1, description="training-set sample ids")


class DeletionView(BaseModel):
    """A deletion request; times are ISO 8601 in UTC (the receipt's too)."""

    request_id: str
    status: Literal["accepted", "applied", "failed"]
    sample_ids: list[int]
    idempotency_key: str | None
    reason: str | None = None
    receipt: dict[str, Any] | None = None
    accepted_at: datetime
    applied_at: datetime | None = None


class DeletionPage(BaseModel):
    """One page of ``GET /v1/deletions``; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[DeletionView]
    next_cursor: str | None = Field(None, description="null on the last page")


class LedgerPosition(BaseModel):
    seq: int = Field(description="the event's sequence number in the ledger")
    link: str = Field(description="sha256 chain link of the event")
    previous_link: str = Field(description="the link of the event before it")


class DeletionReceipt(BaseModel):
    """What an auditor archives: the request, what was done, and where it sits in the
    ledger's hash chain (``link = sha256(previous_link + canonical event)``)."""

    format: Literal["unlearnkit-deletion-receipt/1"] = "unlearnkit-deletion-receipt/1"
    request_id: str
    client: str
    idempotency_key: str | None
    sample_ids: list[int]
    status: Literal["applied"]
    mode: str
    accepted_at: datetime
    applied_at: datetime
    receipt: dict[str, Any]
    ledger: LedgerPosition


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
