import torch

from unlearnkit.models import create_model, select_trainable
from unlearnkit.training import Callback, TrainConfig, accuracy, train


def _trained(digits, cfg, mode="full"):
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, mode)
    return train(model, digits.train, cfg, names), names


def test_same_seed_same_weights(digits, quick_cfg):
    a, _ = _trained(digits, quick_cfg)
    b, _ = _trained(digits, quick_cfg)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    c, _ = _trained(digits, quick_cfg.model_copy(update={"seed": 1}))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_training_learns(digits):
    model, _ = _trained(digits, TrainConfig(epochs=10, lr=0.05))
    assert accuracy(model, digits.test) > 90


def test_frozen_parameters_bit_identical(digits):
    """Momentum and weight decay must not move what is not trainable."""
    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, 8)
    names = select_trainable(model, "bn")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, digits.train, TrainConfig(epochs=2, lr=0.1, weight_decay=0.1), names)
    for n, p in model.named_parameters():
        if n in names:
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n


def test_callbacks_see_every_batch(digits):
    class Recorder(Callback):
        def __init__(self) -> None:
            self.ids: list[int] = []
            self.epochs = 0

        def on_batch_end(self, state) -> None:
            assert state.logits is not None and state.logits.shape[0] == len(state.batch[2])
            self.ids += state.batch[2].tolist()

        def on_epoch_end(self, state) -> None:
            self.epochs += 1

    rec = Recorder()
    model = create_model("smallcnn", 10, 1, 8)
    train(model, digits.train, TrainConfig(epochs=2, batch_size=100), callbacks=[rec])
    assert rec.epochs == 2
    assert sorted(rec.ids) == sorted(digits.train.ids.tolist() * 2)
