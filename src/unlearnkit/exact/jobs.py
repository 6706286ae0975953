"""What a worker trains: some blocks of one shard (a :class:`ShardJob`), one block at a time.

Blocks train with the one training loop, :func:`unlearnkit.training.train`; this module only
says what each block starts from, which samples it sees and which parameters move.

Isolation: the optimizer holds only the block's adapter and head (so momentum and weight decay
cannot reach anything else), the stack stays in eval mode (frozen BatchNorm statistics), and the
block's start and its batch order come from generators seeded by (seed, shard, sequence, stage)
alone. Hence a block's weights depend only on the backbone, the blocks below it in its prefix,
its slices and those four numbers: what exact unlearning needs.

A job run in a worker process (a Ray task, a process pool) pins that process to
``job.worker_threads`` threads (one unless told otherwise); run in the calling process it leaves
the caller's thread setting alone.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import InternalError
from unlearnkit.exact.config import HeadInit
from unlearnkit.exact.stack import LoRAStack, Scheme, StackSpec, block_name
from unlearnkit.models.lora import reset_adapter
from unlearnkit.runtime import pin_worker_threads
from unlearnkit.training import Batch, Callback, TrainConfig, TrainState, train


def stage_seed(seed: int, shard: int, seq: int, stage: int) -> int:
    digest = hashlib.sha256(f"unlearnkit-exact/{seed}/{shard}/{seq}/{stage}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


@torch.no_grad()
def init_block(
    stack: LoRAStack, shard: int, seq: int, stage: int, seed: int, head_init: HeadInit = "backbone"
) -> None:
    """S3T: fresh LoRA, head carried over from the stage above. SISA: start from checkpoint k-1.

    A first stage starts its head from the backbone's own head (``head_init="backbone"``: the
    pretrained head, which saw only public data, so nothing in D) or from a seeded random init.
    """
    name = block_name(shard, seq, stage)
    gen = torch.Generator().manual_seed(stage_seed(seed, shard, seq, stage))
    head = stack.heads[name]
    if stage == 0:
        reset_adapter(stack.backbone, name, gen)
        if head_init == "backbone":
            head.load_state_dict(stack.base_head_state)
            return
        nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=gen)
        bound = 1 / math.sqrt(head.in_features)
        nn.init.uniform_(head.bias, -bound, bound, generator=gen)
        return
    prev = block_name(shard, seq, stage - 1)
    if stack.scheme == "sisa":
        params = dict(stack.backbone.named_parameters())
        for pname in stack.block_parameter_names(name):
            if pname.startswith("backbone."):
                src = pname.replace(f".{name}.", f".{prev}.")
                params[pname[len("backbone.") :]].copy_(params[src[len("backbone.") :]])
    else:
        reset_adapter(stack.backbone, name, gen)
    head.load_state_dict(stack.heads[prev].state_dict())


class _StopOnDivergence(Callback):
    """A block whose loss is no longer finite cannot recover: stop with the block's name."""

    def __init__(self, block: str, lr: float) -> None:
        self.block, self.lr = block, lr

    def on_batch_end(self, state: TrainState) -> None:
        if state.loss is not None and not math.isfinite(state.loss):
            raise InternalError(
                f"training block {self.block} diverged (loss {state.loss}): lower train.lr "
                f"(now {self.lr})"
            )


def train_block(
    stack: LoRAStack,
    shard: int,
    seq: int,
    stage: int,
    data: ArraySplit,
    cfg: TrainConfig,
    seed: int,
    head_init: HeadInit = "backbone",
) -> None:
    """Initialise block (shard, seq, stage) and train it on ``data`` with the one training loop
    (:func:`unlearnkit.training.train`); nothing else may move."""
    init_block(stack, shard, seq, stage, seed, head_init)
    name = block_name(shard, seq, stage)
    adapters, head = stack.prefix(shard, seq, stage + 1)

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch[0], adapters, head), batch[1])

    train(
        stack,
        data,
        cfg.model_copy(update={"seed": stage_seed(seed, shard, seq, stage) + 1}),
        stack.block_parameter_names(name),
        loss,
        [_StopOnDivergence(name, cfg.lr)],
        eval_mode=True,  # the backbone is frozen: BatchNorm statistics must not move
    )
    for p in stack.parameters():
        p.requires_grad_(False)


def stage_data(
    data: ArraySplit, slice_of: dict[int, int], order: Sequence[int], stage: int
) -> ArraySplit:
    """The shard's samples in slices order[0..stage] (cumulative), in data order."""
    wanted = set(order[: stage + 1])
    mask = torch.tensor([slice_of[int(i)] in wanted for i in data.ids.tolist()], dtype=torch.bool)
    return data.subset(mask)


@dataclass
class ShardJob:
    """Everything a worker needs to (re)train some blocks of one shard; picklable."""

    scheme: Scheme
    spec: StackSpec
    backbone_state: dict[str, torch.Tensor]
    num_stages: int
    shard: int
    sequences: list[tuple[int, ...]]
    stages: list[tuple[int, int]]  # (seq, stage) to train, every seq's stages in order
    weights: dict[str, torch.Tensor]  # current weights of the shard's blocks (prefixes to keep)
    data: ArraySplit  # the shard's live samples
    slice_of: dict[int, int]
    train: TrainConfig
    seed: int
    head_init: HeadInit = "backbone"
    worker_threads: int = 1  # threads of a worker process that runs this job
    origin_pid: int = field(default_factory=os.getpid)  # the process that made the job


def run_shard_job(job: ShardJob) -> dict[str, torch.Tensor]:
    """Train the requested blocks of one shard; return all of the shard's block weights."""
    if os.getpid() != job.origin_pid:  # a worker process: do not oversubscribe its machine
        pin_worker_threads(job.worker_threads)
    stack = LoRAStack(
        job.spec, job.backbone_state, job.scheme, job.num_stages, [job.shard], len(job.sequences)
    )
    if job.weights:
        stack.load_blocks(job.weights)
    for seq, stage in job.stages:
        part = stage_data(job.data, job.slice_of, job.sequences[seq], stage)
        train_block(stack, job.shard, seq, stage, part, job.train, job.seed, job.head_init)
    names = [
        block_name(job.shard, b, k)
        for b in range(len(job.sequences))
        for k in range(job.num_stages)
    ]
    return stack.block_state(names)
