"""The sharded precompute: process pool and Ray equal the serial sum, an interrupted run
resumes to the same state, a cache of another job is discarded; the cost model."""

from __future__ import annotations

import pytest
import torch
from ntk_helpers import rel
from torch.utils.flop_counter import FlopCounterMode

import unlearnkit.ntk.precompute as pre
from unlearnkit.ntk import (
    ParamSpace,
    PrecomputeIncomplete,
    compute_gram,
    precompute_cost,
    precompute_state,
    reference_jacobian,
)
from unlearnkit.ntk.precompute import GramJob, ShardCache, job_key


# -- shards, workers, resume ---------------------------------------------------------------------
def gram_of(small, **kw):
    model, names, w0, data = small
    return compute_gram(model, names, w0, data, 4, chunk_size=4, **kw)


def test_sharded_gram_equals_the_per_sample_reference(small):
    model, names, w0, data = small
    stats = gram_of(small, shard_size=8)
    space = ParamSpace.from_model(model, names)
    jac, f0 = reference_jacobian(model, space, data.x, w0)  # the old path, float64 products
    u = jac.reshape(-1, space.numel).double()
    r = (torch.nn.functional.one_hot(data.y, 4).double() - f0.double()).reshape(-1)
    assert stats.count == len(data)
    assert rel(stats.gram, u.T @ u) < 1e-5 and rel(stats.rhs, u.T @ r) < 1e-5


def test_process_pool_equals_serial(small):
    serial = gram_of(small, shard_size=8)
    pooled = gram_of(small, shard_size=8, workers=2)  # two spawned processes, one thread each
    assert torch.allclose(pooled.gram, serial.gram, rtol=1e-6, atol=1e-9)
    assert torch.allclose(pooled.rhs, serial.rhs, rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # starting Ray takes ~15 s
def test_ray_tasks_equal_serial(small):
    pytest.importorskip("ray")
    serial = gram_of(small, shard_size=8)
    remote = gram_of(small, shard_size=8, workers=2, executor="ray")
    assert torch.allclose(remote.gram, serial.gram, rtol=1e-6, atol=1e-9)
    assert torch.allclose(remote.rhs, serial.rhs, rtol=1e-6, atol=1e-9)


def test_interrupted_precompute_resumes_to_the_same_state(small, tmp_path, monkeypatch):
    whole = gram_of(small, shard_size=8)
    cache = tmp_path / "ntk_state.safetensors.parts"
    with pytest.raises(PrecomputeIncomplete, match="2 of 6 shards"):
        gram_of(small, shard_size=8, cache_dir=cache, max_shards=2, checkpoint_s=0)
    assert (cache / "prefix.safetensors").is_file()
    # an injected failure in the 2nd shard of the next run: the 1st (shard 2) is kept
    real, calls = pre.shard_stats, []

    def failing(job, x, y, on_chunk=None):
        calls.append(len(x))
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return real(job, x, y, on_chunk)

    monkeypatch.setattr(pre, "shard_stats", failing)
    with pytest.raises(RuntimeError, match="worker lost"):
        gram_of(small, shard_size=99, cache_dir=cache, checkpoint_s=3600)  # size: the cache's
    monkeypatch.setattr(pre, "shard_stats", real)
    prefix = ShardCache(cache, {}).load_prefix()
    assert prefix is not None and prefix[0] == 3  # shards 0, 1 and 2 are summed and saved
    (cache / "shard-000005.safetensors").write_bytes(b"torn")  # a foreign or broken file
    resumed = gram_of(small, cache_dir=cache)
    assert torch.equal(resumed.gram, whole.gram) and torch.equal(resumed.rhs, whole.rhs)
    assert resumed.count == 48


def test_time_budget_stops_keeps_the_late_shard_and_resumes(small, tmp_path, monkeypatch):
    whole = gram_of(small, shard_size=8)
    cache = tmp_path / "parts"
    with pytest.raises(PrecomputeIncomplete, match="0 of 6 shards") as stop:
        gram_of(small, shard_size=8, cache_dir=cache, time_budget_s=0.0)
    assert stop.value.samples == 0  # the first shard finished after the budget: not summed
    assert (cache / "shard-000000.safetensors").is_file()  # but kept for the resume
    calls = []
    real = pre.shard_stats

    def counting(job, x, y, on_chunk=None):
        calls.append(len(x))
        return real(job, x, y, on_chunk)

    monkeypatch.setattr(pre, "shard_stats", counting)
    resumed = gram_of(small, shard_size=8, cache_dir=cache)
    assert len(calls) == 5 and resumed.count == 48  # shard 0 came from the cache
    assert torch.equal(resumed.gram, whole.gram) and torch.equal(resumed.rhs, whole.rhs)


def test_time_budget_reports_the_summed_prefix(small, tmp_path):
    with pytest.raises(PrecomputeIncomplete) as stop:
        gram_of(small, shard_size=8, cache_dir=tmp_path / "p", time_budget_s=3600, max_shards=3)
    prefix = ShardCache(tmp_path / "p", {}).load_prefix()
    assert stop.value.samples == 24 and prefix is not None and prefix[1].count == 24
    assert stop.value.elapsed_s > 0


def test_cache_of_another_job_is_discarded(small, tmp_path):
    model, names, w0, data = small
    cache = tmp_path / "parts"
    with pytest.raises(PrecomputeIncomplete):
        gram_of(small, shard_size=8, cache_dir=cache, max_shards=1, checkpoint_s=0)
    other = {**w0, "head.bias": w0["head.bias"] + 1.0}
    assert job_key_of(small, other) != job_key_of(small, w0)
    fresh = compute_gram(model, names, other, data, 4, chunk_size=4, cache_dir=cache)
    direct = compute_gram(model, names, other, data, 4, chunk_size=4)
    assert torch.allclose(fresh.gram, direct.gram, rtol=1e-6, atol=1e-9)


def job_key_of(small, w0):
    model, names, _, data = small
    job = GramJob(model, tuple(names), w0, 4, 4, "exact", torch.float64, None)
    return job_key(job, data)


def test_precompute_state_with_workers_and_cache_equals_plain(small, tmp_path):
    model, names, w0, data = small
    plain = precompute_state(model, names, w0, data, 4, 0.1, chunk_size=4)
    cached = precompute_state(
        model, names, w0, data, 4, 0.1, chunk_size=4, cache_dir=tmp_path / "c", shard_size=12
    )
    assert torch.allclose(cached.inverse, plain.inverse, rtol=1e-5, atol=1e-8)
    assert cached.fingerprint == plain.fingerprint and cached.kernel == "exact"


# -- the cost model ------------------------------------------------------------------------------
def test_cost_model_counts_the_model_and_the_gram(small):
    model, names, _, data = small
    cost = precompute_cost(model, names, data.x[:4], 4, gemm_rate=1e10)
    p = ParamSpace.from_model(model, names).numel
    assert cost.gram_flops == 4 * p * (p + 1)  # the upper triangle's multiply-adds, x 2
    with FlopCounterMode(display=False) as fwd:
        model.eval()(data.x[:4])
    # one forward plus C reverse passes through the activations: more than C forwards' worth
    # minus the first layer (its input gradient is never needed)
    assert 2 * fwd.get_total_flops() / 4 < cost.model_flops < 12 * fwd.get_total_flops() / 4
    assert cost.limit_s_per_sample == pytest.approx(cost.flops / 1e10)
    assert cost.multiple(2 * cost.limit_s_per_sample) == pytest.approx(2.0)
    pseudo = precompute_cost(model, names, data.x[:4], 4, kernel="pntk", gemm_rate=1e10)
    assert pseudo.gram_flops == p * (p + 1) and pseudo.model_flops < cost.model_flops
