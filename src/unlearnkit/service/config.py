"""Validated service settings (a bad value fails at start-up, naming the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unlearnkit.runtime.device import Precision, check_device_name, check_precision
from unlearnkit.service.served import SERVED_MODELS


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: Path
    mode: str = Field(
        "exact", description="exact (S3T/SISA) | approximate (Fast-NTK) | static (no deletions)"
    )
    max_body_bytes: int = Field(4 * 2**20, ge=1024, description="largest request body")
    max_batch: int = Field(256, ge=1, le=100_000, description="most inputs per prediction")
    max_delete_ids: int = Field(1000, ge=1, le=1_000_000, description="most ids per deletion")
    max_image_bytes: int = Field(2**20, ge=64, description="largest decoded base64 image")
    max_decode_pixels: int = Field(
        2**24,
        ge=1,
        description="most pixels decoded per prediction request, all images together "
        "(width x height as each image's header declares it)",
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="grace seconds for a request body, then min_body_rate applies"
    )
    min_body_rate: float = Field(
        64 * 1024, gt=0, description="bytes/s a request body must arrive at, beyond body_timeout_s"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a client may take to send a request's headers"
    )
    max_connections: int = Field(
        128, ge=1, le=100_000, description="open connections before new requests get a 503"
    )
    rate_limit: float = Field(
        0.0, ge=0, description="requests per second per token (token bucket); 0: no limit"
    )
    rate_burst: int = Field(20, ge=1, le=1_000_000, description="bucket size of the rate limit")
    snapshot_every: int = Field(200, ge=1, description="applied deletions between snapshots")
    snapshot_interval_s: float = Field(30.0, gt=0, description="snapshot a changed model after")
    background_retrain: bool = Field(True, description="retrain dead shards in the background")
    retrain_poll_s: float = Field(0.5, gt=0)
    retrain_in_subprocess: bool = Field(True, description="train in a child process")
    retrain_nice: int = Field(10, ge=0, le=19, description="CPU niceness of the retrain child")
    retrain_threads: int = Field(1, ge=1, le=256, description="CPU threads of the retrain child")
    apply_timeout_s: float = Field(10.0, gt=0, description="wait for an exact deletion to apply")
    exact_pass: Literal["packed", "loop"] = Field(
        "packed",
        description="exact mode's forward pass: packed (the frozen trunk once, every served "
        "shard in one computation, an immutable view per version) or loop (one shard at a "
        "time on the shared stack: the reference)",
    )
    batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="exact packed mode: predictions arriving within this window share one "
        "pass (micro-batching); 0 switches it off",
    )
    torch_threads: int = Field(
        1, ge=1, le=256, description="CPU threads of the serving process (`serve --threads`)"
    )
    device: str = Field("auto", description="serving device: auto | cpu | cuda | cuda:N | mps")
    precision: Precision = Field("fp32", description="inference autocast: fp32 | bf16 | fp16")
    retrain_device: str | None = Field(
        None, description="the retrain child's device (default: the serving device)"
    )
    group_readable: bool = Field(
        False,
        description="service files 0640 / directories 0750 (group may read) instead of 0600 / 0700",
    )
    ledger_mark: Path | None = Field(
        None,
        description="where the ledger's high-water mark lives (default: service/ledger.mark "
        "in the model directory; elsewhere, it also catches a rollback of that directory)",
    )
    reset_ledger_mark: bool = Field(
        False,
        description="after restoring an older backup on purpose: trust the (chain-verified) "
        "ledger as complete and move the mark back to its end; deletions acknowledged after "
        "the backup are lost and must be re-submitted",
    )
    ntk_update: Literal["linearized", "paper"] = Field(
        "linearized",
        description="approximate mode: serve the linearized model or the paper's "
        "angle-scaled update of the trained network",
    )

    @field_validator("device", "retrain_device")
    @classmethod
    def _device_name(cls, value: str | None) -> str | None:
        return None if value is None else check_device_name(value)

    @model_validator(mode="after")
    def _device_precision(self) -> ServiceConfig:
        check_precision(self.device, self.precision)
        return self

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in SERVED_MODELS:
            raise ValueError(
                f"unknown serving mode {value!r}; choose one of: {', '.join(SERVED_MODELS.names())}"
            )
        return value
