"""Exact mode serves packed views (issue 26 item 3): one immutable view per version, swapped on a
deletion or a finished retrain, and concurrent predictions micro-batched into shared passes."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from service_helpers import start_service

from unlearnkit.service.auth import Principal
from unlearnkit.service.batching import MicroBatcher
from unlearnkit.service.config import ServiceConfig

WHO = Principal(name="tester", scopes=frozenset({"admin"}))


def _threads(fn, n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return threads


def test_micro_batcher_shares_one_pass_and_gives_each_request_its_rows():
    weight = torch.randn(5, 3)
    calls: list[int] = []

    def logits(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        time.sleep(0.1)  # a pass long enough for the others to arrive during it
        return x @ weight.T

    batcher = MicroBatcher(window_s=0.3, max_rows=1000)
    inputs = [torch.randn(i + 1, 3) for i in range(6)]
    got: dict[int, torch.Tensor] = {}
    _threads(lambda i: got.update({i: batcher.run("v1", logits, inputs[i])}), 6)
    for i, x in enumerate(inputs):
        torch.testing.assert_close(got[i], x @ weight.T)
    assert len(calls) < 6 and sum(calls) == 21  # shared passes, every row computed once
    off = MicroBatcher(window_s=0, max_rows=1000)
    calls.clear()
    _threads(lambda i: off.run("v1", logits, inputs[i]), 6)
    assert len(calls) == 6  # window 0: no batching
    calls.clear()
    started = time.perf_counter()
    for x in inputs[:3]:  # one client, one request at a time: no window to wait
        batcher.run("v1", logits, x)
    assert len(calls) == 3 and time.perf_counter() - started < 3 * 0.1 + 0.25


def test_micro_batcher_never_mixes_versions_nor_exceeds_max_rows():
    seen: list[tuple[str, int]] = []

    def model(tag: str):
        return lambda x: (seen.append((tag, len(x))), x * (1 if tag == "a" else -1))[1]

    batcher = MicroBatcher(window_s=0.2, max_rows=4)
    out: dict[int, torch.Tensor] = {}
    keys = ["a", "b", "a", "b", "a", "a"]
    _threads(lambda i: out.update({i: batcher.run(keys[i], model(keys[i]), torch.ones(2))}), 6)
    for i, key in enumerate(keys):
        assert torch.equal(out[i], torch.ones(2) * (1 if key == "a" else -1))
    assert all(rows <= 4 for _, rows in seen)


def test_a_failing_pass_fails_every_request_it_carried():
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    batcher = MicroBatcher(window_s=0.2, max_rows=100)
    errors: list[str] = []

    def call(i: int) -> None:
        try:
            batcher.run("k", broken, torch.ones(1))
        except RuntimeError as exc:
            errors.append(str(exc))

    _threads(call, 3)
    assert errors == ["boom"] * 3


def test_batch_window_and_pass_are_validated(tmp_path):
    assert ServiceConfig(model_dir=tmp_path).exact_pass == "packed"
    with pytest.raises(ValueError, match="batch_window_ms"):
        ServiceConfig(model_dir=tmp_path, batch_window_ms=-1)
    with pytest.raises(ValueError, match="exact_pass"):
        ServiceConfig(model_dir=tmp_path, exact_pass="fast")


@pytest.fixture
def packed_service(exact_dir):
    svc = start_service(exact_dir, background_retrain=False, batch_window_ms=50)
    yield svc
    svc.close()


def test_packed_views_are_immutable_and_swapped_on_deletion_and_retrain(
    packed_service, digits_small
):
    svc, (bundle, _) = packed_service, digits_small
    model, x = svc.model, bundle.test.x[:8]
    assert not model.shares_modules  # a packed view reads nothing a change writes
    before = model.view()
    old = before.logits(x)
    torch.testing.assert_close(
        old, model.ensemble.predict_logits(x, packed=False), atol=1e-5, rtol=0
    )
    ens = model.ensemble
    members = ens.partition.members(0)
    by_slice = {ens.partition.owner[i][1]: i for i in members}
    event, _ = svc.submit_deletion(WHO, sorted(by_slice.values()), "kill-shard-0")
    assert event.status == "applied" and 0 in ens.dead_shards()
    after = model.view()
    assert after.version == before.version + 1 and after.batch_key is not before.batch_key
    torch.testing.assert_close(before.logits(x), old, atol=0, rtol=0)  # the old version stays
    loop = ens.predict_logits(x, packed=False)
    torch.testing.assert_close(after.logits(x), loop, atol=1e-5, rtol=0)
    probs, version = svc.predict(x)
    assert version == after.version
    torch.testing.assert_close(probs, torch.softmax(loop, 1), atol=1e-5, rtol=0)
    model.retrain(0)  # a finished retrain swaps a new view in
    revived = model.view()
    assert 0 not in ens.dead_shards() and revived.version == after.version + 1
    torch.testing.assert_close(
        revived.logits(x), ens.predict_logits(x, packed=False), atol=1e-5, rtol=0
    )


def test_concurrent_predictions_share_passes_and_match_alone(packed_service, digits_small):
    svc, (bundle, _) = packed_service, digits_small
    xs = [bundle.test.x[4 * i : 4 * i + 4] for i in range(8)]
    alone = [svc.model.ensemble.predict_logits(x, packed=False) for x in xs]
    passes = svc.batcher.passes
    got: dict[int, tuple[torch.Tensor, int]] = {}
    _threads(lambda i: got.update({i: svc.predict(xs[i])}), 8)
    assert svc.batcher.passes - passes < 8
    for i in range(8):
        torch.testing.assert_close(got[i][0], torch.softmax(alone[i], 1), atol=1e-5, rtol=0)


def test_loop_pass_is_still_served_when_asked(exact_dir, digits_small):
    svc = start_service(exact_dir, background_retrain=False, exact_pass="loop")
    try:
        bundle, _ = digits_small
        assert svc.model.shares_modules and svc.model.view().batch_key is None
        probs, _ = svc.predict(bundle.test.x[:4])
        loop = svc.model.ensemble.predict_logits(bundle.test.x[:4], packed=False)
        want = torch.softmax(loop, 1)
        torch.testing.assert_close(probs, want, atol=1e-5, rtol=0)
        assert svc.model.ensemble.packer._network is None  # the packed pass never ran
    finally:
        svc.close()


def test_deletion_does_not_wait_for_a_packed_pass_in_flight(packed_service, digits_small):
    svc, (bundle, _) = packed_service, digits_small
    model, real_view = svc.model, svc.model.view
    inside, release = threading.Event(), threading.Event()

    def slow_view():
        view = real_view()

        def logits(x: torch.Tensor) -> torch.Tensor:
            inside.set()
            release.wait(10)
            return view.logits(x)

        return type(view)(view.version, logits, batch_key=view.batch_key)

    model.view = slow_view
    version, got = model.version, {}
    predictor = threading.Thread(target=lambda: got.update(out=svc.predict(bundle.test.x[:4])))
    predictor.start()
    assert inside.wait(5)
    target = model.ensemble.partition.members(1)[0]
    event, new = svc.submit_deletion(WHO, [target], "during-packed-pass")
    assert new and event.status == "applied" and predictor.is_alive()  # did not wait
    release.set()
    predictor.join(10)
    model.view = real_view
    assert got["out"][1] == version and svc.predict(bundle.test.x[:4])[1] == version + 1
