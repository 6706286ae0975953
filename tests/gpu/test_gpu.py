"""On a CUDA GPU: training, predictions, the NTK precompute and S3T deletion run there, give the
CPU's answers (to float32 tolerance; S3T bit for bit against itself with deterministic kernels),
and autocast trains in bf16 and fp16. Skipped without CUDA (tests/gpu/conftest.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from unlearnkit.models import create_model, select_trainable
from unlearnkit.ntk.gram import accumulate_gram
from unlearnkit.ntk.params import ParamSpace
from unlearnkit.runtime import Runtime, current_runtime, using_runtime
from unlearnkit.training import Callback, TrainConfig, TrainState, accuracy, predict_logits, train


@pytest.fixture(scope="module")
def cuda() -> Iterator[Runtime]:
    """The CUDA runtime with deterministic kernels, for this module only."""
    with using_runtime(current_runtime()):
        yield Runtime.create("cuda", "fp32", deterministic=True).activate()
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def data(digits):
    return digits.train.subset(torch.arange(256)), digits.test.subset(torch.arange(128))


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("smallcnn", 10, 1, 8, width=8)


class Where(Callback):
    def __init__(self) -> None:
        self.devices: set[str] = set()

    def on_batch_end(self, state: TrainState) -> None:
        self.devices.add(state.batch[0].device.type)


def test_training_runs_on_the_gpu_and_matches_the_cpu(cuda, data) -> None:
    train_split, test = data
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=32)
    on_cpu, on_gpu = small_model(), small_model()
    with using_runtime(Runtime.create("cpu")):
        train(on_cpu, train_split, cfg)
    where = Where()
    with using_runtime(cuda):
        train(on_gpu, train_split, cfg, callbacks=[where])
        gpu_logits = predict_logits(on_gpu, test.x)
    assert where.devices == {"cuda"}
    assert all(p.device.type == "cpu" for p in on_gpu.parameters())  # back where it started
    assert gpu_logits.device.type == "cpu" and gpu_logits.dtype == torch.float32
    cpu_logits = predict_logits(on_cpu, test.x)
    assert torch.allclose(gpu_logits, cpu_logits, rtol=1e-2, atol=1e-2)
    with using_runtime(cuda):
        assert abs(accuracy(on_gpu, test) - accuracy(on_cpu, test)) <= 3.0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_trains_in_half_precision(data, precision) -> None:
    train_split, test = data
    model = small_model()
    seen: list[torch.dtype] = []
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    rt = Runtime.create("cuda", precision)
    assert (rt.grad_scaler() is not None) == (precision == "fp16")
    with using_runtime(rt):
        train(model, train_split, TrainConfig(epochs=2, lr=0.05, batch_size=32))
        logits = predict_logits(model, test.x)
    expected = torch.bfloat16 if precision == "bf16" else torch.float16
    assert set(seen) == {expected}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert float((logits.argmax(1) == test.y).float().mean()) > 0.3


def test_ntk_gram_on_the_gpu_matches_the_cpu(cuda, data) -> None:
    train_split, _ = data
    model = small_model()
    names = select_trainable(model, "bn")
    space = ParamSpace.from_model(model, names)
    x, y = train_split.x[:64], train_split.y[:64]
    cpu = accumulate_gram(model, space, x, y, 10, chunk_size=16)
    with using_runtime(cuda):
        gpu = accumulate_gram(model, space, x, y, 10, chunk_size=16)
    assert gpu.gram.device.type == "cpu" and gpu.gram.dtype == torch.float64
    scale = cpu.gram.abs().max()
    assert float((gpu.gram - cpu.gram).abs().max() / scale) < 1e-4
    assert torch.allclose(gpu.rhs, cpu.rhs, rtol=1e-4, atol=1e-4 * float(cpu.rhs.abs().max()))


def test_s3t_delete_and_predict_are_exact_on_the_gpu(cuda, data) -> None:
    from unlearnkit.exact import S3TConfig, S3TEnsemble
    from unlearnkit.exact.backbone import random_backbone
    from unlearnkit.exact.stack import StackSpec

    train_split, test = data
    options = {"width": 8}
    backbone = random_backbone(StackSpec("smallcnn", 10, 1, 8, options), seed=5)
    config = S3TConfig(
        num_shards=2,
        num_slices=3,
        num_sequences=2,
        model_options=options,
        train=TrainConfig(epochs=1, lr=0.01, batch_size=16),
        retrain_policy="manual",
        lora_rank=4,
    )
    with using_runtime(cuda):
        ens = S3TEnsemble.train(train_split, config, num_classes=10, backbone_state=backbone)
        again = S3TEnsemble.train(train_split, config, num_classes=10, backbone_state=backbone)
        assert torch.equal(ens.predict_logits(test.x), again.predict_logits(test.x))
        seq0 = ens.sequences[0]
        x = ens.partition.members(0, seq0[1])[0]
        ens.delete([x])
        plan = ens.serving_plan()
        served = ens.predict_logits(test.x)
        ref = S3TEnsemble.train(
            train_split.drop_ids([x]), config, num_classes=10, backbone_state=backbone
        )
        assert torch.equal(served, ref.predict_logits(test.x, plan=plan))
        ens.retrain_shard(0)
        assert torch.equal(ens.predict_logits(test.x), ref.predict_logits(test.x))
    assert served.device.type == "cpu"


def test_process_pool_gives_each_worker_a_gpu(cuda) -> None:
    from unlearnkit.runtime import create_executor

    with using_runtime(cuda), create_executor("processes") as ex:
        assert ex.workers == torch.cuda.device_count()
        devices = ex.map(_worker_device, list(range(ex.workers)))
    assert all(d.startswith("cuda") for d in devices)


def _worker_device(_: int) -> str:
    from unlearnkit.runtime import current_runtime

    return str(current_runtime().device)


def test_copy_of_a_model_is_independent_of_placement(cuda) -> None:
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    with cuda.placed(model):
        assert next(model.parameters()).device.type == "cuda"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
