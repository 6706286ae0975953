"""Request and response bodies of the HTTP API (pydantic v2; they make the OpenAPI docs)."""

from __future__ import annotations

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
    request_id: str
    status: Literal["accepted", "applied", "failed"]
    sample_ids: list[int]
    idempotency_key: str | None
    reason: str | None = None
    receipt: dict[str, Any] | None = None
    accepted_at: float
    applied_at: float | None = None


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
