"""The runtime object on the CPU: device and precision parsing, the refusals, bf16 autocast,
and the plumbing that hands it to training, predictions, executors and configs."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.runtime import Runtime, RuntimeConfig, create_executor, current_runtime
from unlearnkit.runtime.device import check_device_name, resolve_device, using_runtime
from unlearnkit.training import TrainConfig, predict_logits, train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")


def bf16_on_cpu() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16
    except RuntimeError:
        return False


def small_model() -> nn.Module:
    return create_model("smallcnn", 10, 1, 8, width=4)


def test_default_runtime_is_the_cpu_in_fp32() -> None:
    rt = current_runtime()
    assert rt.device == torch.device("cpu") and rt.precision == "fp32"
    x = torch.ones(3)
    assert rt.batch(x)[0] is x  # no copy on the CPU
    model = nn.Linear(2, 2)
    assert rt.module(model) is model and rt.free_memory() is None
    assert rt.grad_scaler() is None


@pytest.mark.parametrize("name", ["auto", "cpu", "CUDA", "cuda:1", "mps", " cpu "])
def test_device_names_are_accepted(name: str) -> None:
    assert check_device_name(name) == name.strip().lower()


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "tpu", "", "cpu:0"])
def test_unknown_device_is_one_line(name: str) -> None:
    with pytest.raises(UnlearnkitError, match=r"unknown device .*auto \| cpu \| cuda"):
        Runtime.create(name)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused(name: str) -> None:
    with pytest.raises(UnlearnkitError, match="CUDA is not available"):
        Runtime.create(name)


@no_cuda
def test_auto_is_the_cpu_without_cuda() -> None:
    assert resolve_device("auto") == torch.device("cpu")


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(UnlearnkitError, match="fp16 needs a GPU"):
        Runtime.create("cpu", "fp16")
    with pytest.raises(UnlearnkitError, match="unknown precision"):
        Runtime.create("cpu", "fp8")


def test_config_fields_fail_naming_the_field() -> None:
    from unlearnkit.config import ExperimentConfig

    with pytest.raises(ValidationError, match="device"):
        RuntimeConfig(device="gpu")
    with pytest.raises(ValidationError, match="precision"):
        RuntimeConfig(precision="half")
    with pytest.raises(ValidationError, match="fp16 needs a GPU"):
        ExperimentConfig(device="cpu", precision="fp16")
    cfg = ExperimentConfig(device="cuda:0", precision="bf16")  # the spelling only: no GPU asked
    assert (cfg.device, cfg.precision) == ("cuda:0", "bf16")
    assert ExperimentConfig().device == "auto"


def test_service_config_validates_devices(tmp_path) -> None:
    from unlearnkit.service import ServiceConfig

    with pytest.raises(ValidationError, match="device"):
        ServiceConfig(model_dir=tmp_path, device="gpu")
    with pytest.raises(ValidationError, match="retrain_device"):
        ServiceConfig(model_dir=tmp_path, retrain_device="npu")
    assert ServiceConfig(model_dir=tmp_path, retrain_device="cpu").retrain_device == "cpu"


def test_activate_resolves_threads_and_becomes_current() -> None:
    before = current_runtime()
    with using_runtime(before):  # restores the runtime in force afterwards
        rt = Runtime.create("cpu", "fp32", threads=1).activate()
        assert rt.threads == 1 and torch.get_num_threads() == 1
        assert current_runtime() is rt
    assert current_runtime() is before


def test_explicit_cpu_runtime_trains_bit_identically(digits) -> None:
    data = digits.train.subset(torch.arange(64))
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05)
    torch.manual_seed(0)
    a = small_model()
    b = copy.deepcopy(a)
    train(a, data, cfg)
    with using_runtime(Runtime.create("cpu", "fp32")):
        train(b, data, cfg)
    after_a, after_b = a.state_dict(), b.state_dict()
    assert all(torch.equal(after_a[k], after_b[k]) for k in after_a)


@pytest.mark.skipif(not bf16_on_cpu(), reason="this torch has no CPU bf16 autocast")
def test_bf16_autocast_on_cpu_trains_and_predicts_in_float32_out(digits) -> None:
    data = digits.train.subset(torch.arange(64))
    torch.manual_seed(0)
    model = small_model()
    seen: list[torch.dtype] = []
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with using_runtime(Runtime.create("cpu", "bf16")):
        train(model, data, TrainConfig(epochs=1, batch_size=16, lr=0.05))
        logits = predict_logits(model, data.x)
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert logits.dtype == torch.float32 and logits.shape == (64, 10)
    assert torch.isfinite(logits).all()


def report_runtime(_: int) -> tuple[str, str]:
    rt = current_runtime()
    return str(rt.device), rt.precision


def test_process_workers_receive_the_runtime() -> None:
    with (
        using_runtime(Runtime.create("cpu", "bf16")),
        create_executor("processes", workers=1) as ex,
    ):
        assert ex.map(report_runtime, [0, 1]) == [("cpu", "bf16")] * 2
    with create_executor("processes", workers=1) as ex:  # CPU fp32: workers as before
        assert ex.runtime is None
        assert ex.map(report_runtime, [0]) == [("cpu", "fp32")]


def test_cpu_runtime_keeps_one_device_per_worker() -> None:
    rt = Runtime.create("cpu", "bf16")
    assert rt.for_worker(3) is rt


def test_ntk_memory_budget_is_host_memory_on_the_cpu() -> None:
    from unlearnkit.ntk.memory import available_memory, host_memory

    assert abs(available_memory() - host_memory()) < 2**28  # the same reading, moments apart


def test_linearized_model_moves_its_linearization_point_with_it(digits) -> None:
    """``.to(...)`` (what ``runtime.placed`` does) converts w0 too, so the NTK's served model
    runs wherever it is placed (checked here with a dtype move, the CPU's only other place)."""
    from unlearnkit.models import select_trainable
    from unlearnkit.ntk.linearized import LinearizedModel

    base = small_model()
    names = select_trainable(base, "bn")
    lin = LinearizedModel(base, names, base.state_dict()).eval()
    x = digits.test.x[:4]
    before = lin(x)
    lin.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in lin._w0.values())
    after = lin(x.double())
    assert after.dtype == torch.float64
    assert torch.allclose(after.float(), before, atol=1e-4)
