"""The model lock: a deletion never waits for a forward pass; a change that writes weights in
place waits for the pass in flight, goes before new ones, and stale views are taken again."""

from __future__ import annotations

import threading
import time

import pytest
from service_helpers import start_service

from unlearnkit.service.auth import Principal
from unlearnkit.service.model_lock import ModelLock

WHO = Principal(name="tester", scopes=frozenset({"admin"}))


def in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_bookkeeping_changes_do_not_wait_for_a_forward_pass() -> None:
    lock, inside, release = ModelLock(), threading.Event(), threading.Event()

    def forward() -> None:
        with lock.forward():
            inside.set()
            release.wait(10)

    holder = in_thread(forward)
    assert inside.wait(5)
    start = time.perf_counter()
    with lock.writing(in_place=False):
        pass
    with lock.reading():
        pass
    assert time.perf_counter() - start < 0.5 and holder.is_alive()
    assert lock.weights_epoch == 0
    release.set()
    holder.join(5)


def test_in_place_change_waits_for_the_pass_in_flight_and_goes_before_new_ones() -> None:
    lock, order = ModelLock(), []
    inside, release = threading.Event(), threading.Event()

    def forward(name: str, hold: threading.Event | None = None) -> None:
        with lock.forward():
            order.append(name)
            if hold is not None:
                inside.set()
                hold.wait(10)

    def change() -> None:
        with lock.writing(in_place=True):
            order.append("change")

    first = in_thread(lambda: forward("first", release))
    assert inside.wait(5)
    writer = in_thread(change)
    time.sleep(0.2)  # the writer now holds the turnstile, waiting for the modules
    assert order == ["first"]
    later = in_thread(lambda: forward("later"))
    time.sleep(0.2)
    assert order == ["first"]  # the new pass waits behind the change
    release.set()
    for thread in (first, writer, later):
        thread.join(5)
    assert order == ["first", "change", "later"] and lock.weights_epoch == 1


@pytest.fixture
def service(exact_dir):
    """The loop pass: the one whose forward passes share modules (the packed pass's views are
    immutable and need no modules lock: tests/service/test_packed_serving.py)."""
    svc = start_service(exact_dir, background_retrain=False, exact_pass="loop")
    yield svc
    svc.close()


def test_deletion_is_applied_while_a_prediction_is_in_its_forward_pass(service, digits_small):
    bundle, _ = digits_small
    ensemble = service.model.ensemble
    real, inside, release = ensemble.predict_logits, threading.Event(), threading.Event()

    def slow(x, plan=None, batch_size=512, **kw):
        inside.set()
        release.wait(10)
        return real(x, plan, batch_size, **kw)

    ensemble.predict_logits = slow
    got = {}
    version = service.model.version
    predictor = in_thread(lambda: got.update(out=service.predict(bundle.test.x[:4])))
    assert inside.wait(5)
    timings: dict[str, float] = {}
    target = ensemble.partition.members(0)[0]
    event, new = service.submit_deletion(WHO, [target], "while-predicting", timings)
    assert new and event.status == "applied" and predictor.is_alive()  # did not wait for it
    assert timings["lock"] < 1.0 and set(timings) >= {"accept", "queue", "apply", "record"}
    release.set()
    predictor.join(10)
    ensemble.predict_logits = real
    assert got["out"][1] == version  # the pass in flight answers with the version it started on
    _, after = service.predict(bundle.test.x[:4])
    assert after == version + 1 and target in service.model.deleted_ids()


def test_a_view_taken_before_an_in_place_change_is_taken_again(service, digits_small):
    bundle, _ = digits_small
    lock, model = service.model_lock, service.model
    views, real_view = [], model.view

    def counting_view():
        views.append(model.version)
        return real_view()

    model.view = counting_view
    inside, release = threading.Event(), threading.Event()

    def hold_forward() -> None:
        with lock.forward():
            inside.set()
            release.wait(10)

    def in_place_change() -> None:
        with lock.writing(in_place=True):
            model.ensemble.version += 1  # stands in for a retrain swapped in

    holder = in_thread(hold_forward)
    assert inside.wait(5)
    writer = in_thread(in_place_change)
    time.sleep(0.2)  # the change waits for the pass, holding the turnstile
    got = {}
    predictor = in_thread(lambda: got.update(out=service.predict(bundle.test.x[:2])))
    time.sleep(0.2)
    release.set()
    for thread in (holder, writer, predictor):
        thread.join(10)
    first_version = views[0]
    assert len(views) == 2  # the stale view was replaced under the modules lock
    assert got["out"][1] == first_version + 1
