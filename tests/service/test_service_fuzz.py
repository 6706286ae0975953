"""Property-based fuzzing (schemathesis + hypothesis) from the app's own OpenAPI schema against
the real uvicorn server on 127.0.0.1: schema-valid and schema-violating requests to every
operation. For each: no 5xx (except the documented 503 of a prediction once every shard is
dead), the status code, content type, headers and body conform to the schema, and a refused
request (4xx) leaves the ledger and the served model exactly as they were.

The default run draws ``FUZZ_EXAMPLES`` (100) requests in all; the ``slow`` run 1000."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import ADMIN, running_server, start_service

from unlearnkit.errors import ConflictError
from unlearnkit.service.app import create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

FUZZ_EXAMPLES = 100
X = torch.zeros(2, 1, 8, 8)
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def state(service) -> tuple:
    """Ledger rows and status counts, model version, deleted ids, a hash of the predictions."""
    model = service.model
    try:
        probs, _ = service.predict(X)
        served = hashlib.sha256(probs.numpy().tobytes()).hexdigest()
    except ConflictError:  # every shard dead: nothing to hash
        served = "no live shard"
    counts = tuple(sorted(service.ledger.counts().items()))
    return service.ledger.last_seq(), counts, model.version, sorted(model.deleted_ids()), served


def strategy(app) -> st.SearchStrategy:
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/deletions", "/v1/model"}
    return st.sampled_from(operations).flatmap(
        lambda op: st.sampled_from(list(GenerationMode)).flatmap(
            lambda mode: op.as_strategy(generation_mode=mode)
        )
    )


def fuzz(model_dir, tokens, examples: int, budget_s: float) -> dict[int, int]:
    service = start_service(model_dir, background_retrain=False)
    app = create_app(service, tokens)
    seen: dict[int, int] = {}
    started = time.monotonic()
    try:
        with running_server(app) as url:
            cases = strategy(app)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases)
            def run(case) -> None:
                assert time.monotonic() - started < budget_s, "fuzz run over its time budget"
                before = state(service)
                response = case.call(
                    base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
                )
                code = response.status_code
                seen[code] = seen.get(code, 0) + 1
                no_shard = code == 503 and case.operation.path == "/v1/predict"
                assert code < 500 or (no_shard and service.model.live_shard_count() == 0), (
                    f"{case.method} {case.formatted_path}: {code} {response.text[:300]}"
                )
                case.validate_response(response, checks=CHECKS)
                if code >= 400:
                    assert state(service) == before, f"a refused request changed state: {code}"

            run()
    finally:
        service.close()
    return seen


def test_fuzz_the_api_from_its_schema(exact_dir, tokens):
    seen = fuzz(exact_dir, tokens, FUZZ_EXAMPLES, budget_s=120)
    assert sum(seen.values()) >= FUZZ_EXAMPLES // 2
    assert any(400 <= code < 500 for code in seen)  # hostile input was drawn and refused
    assert any(code < 300 for code in seen)


@pytest.mark.slow
def test_fuzz_the_api_from_its_schema_long(exact_dir, tokens):
    seen = fuzz(exact_dir, tokens, 10 * FUZZ_EXAMPLES, budget_s=900)
    assert any(code < 300 for code in seen)
