"""Training one block (one stage of one sequence of one shard), and a whole shard as a job.

Isolation: the optimizer holds only the block's adapter and head (so momentum and weight decay
cannot reach anything else), the stack stays in eval mode (frozen BatchNorm statistics), and the
block's start and its batch order come from a generator seeded by (seed, shard, sequence, stage)
alone. Hence a block's weights depend only on the backbone, the blocks below it in its prefix,
its slices and those four numbers: what exact unlearning needs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArraySplit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.exact.stack import LoRAStack, ModelSpec, Scheme, block_name
from unlearnkit.models.lora import reset_adapter
from unlearnkit.training import TrainConfig, batch_indices, make_optimizer, make_scheduler


def stage_seed(seed: int, shard: int, seq: int, stage: int) -> int:
    digest = hashlib.sha256(f"unlearnkit-exact/{seed}/{shard}/{seq}/{stage}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


@torch.no_grad()
def init_block(stack: LoRAStack, shard: int, seq: int, stage: int, seed: int) -> None:
    """S3T: fresh LoRA, head carried over from the stage above. SISA: start from checkpoint k-1."""
    name = block_name(shard, seq, stage)
    gen = torch.Generator().manual_seed(stage_seed(seed, shard, seq, stage))
    head = stack.heads[name]
    if stage == 0:
        reset_adapter(stack.backbone, name, gen)
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


def train_block(
    stack: LoRAStack,
    shard: int,
    seq: int,
    stage: int,
    data: ArraySplit,
    cfg: TrainConfig,
    seed: int,
) -> None:
    """Initialise and train block (shard, seq, stage) on ``data``; nothing else may move."""
    init_block(stack, shard, seq, stage, seed)
    name = block_name(shard, seq, stage)
    trainable = stack.block_parameter_names(name)
    wanted = set(trainable)
    for pname, p in stack.named_parameters():
        p.requires_grad_(pname in wanted)
    adapters, head = stack.prefix(shard, seq, stage + 1)
    gen = torch.Generator().manual_seed(stage_seed(seed, shard, seq, stage) + 1)
    optimizer = make_optimizer(stack, trainable, cfg)
    steps = len(batch_indices(len(data), cfg.batch_size, torch.Generator()))
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps)
    stack.eval()
    for _ in range(cfg.epochs):
        for index in batch_indices(len(data), cfg.batch_size, gen):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(stack(data.x[index], adapters, head), data.y[index])
            if not torch.isfinite(loss):
                raise UnlearnkitError(
                    f"training block {name} diverged (loss {float(loss.detach())}): lower train.lr "
                    f"(now {cfg.lr})"
                )
            loss.backward()
            optimizer.step()
            scheduler.step()
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
    spec: ModelSpec
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
    threads: int | None = None


def run_shard_job(job: ShardJob) -> dict[str, torch.Tensor]:
    """Train the requested blocks of one shard; return all of the shard's block weights."""
    if job.threads:
        torch.set_num_threads(job.threads)
    stack = LoRAStack(
        job.spec, job.backbone_state, job.scheme, job.num_stages, [job.shard], len(job.sequences)
    )
    if job.weights:
        stack.load_blocks(job.weights)
    for seq, stage in job.stages:
        part = stage_data(job.data, job.slice_of, job.sequences[seq], stage)
        train_block(stack, job.shard, seq, stage, part, job.train, job.seed)
    names = [
        block_name(job.shard, b, k)
        for b in range(len(job.sequences))
        for k in range(job.num_stages)
    ]
    return stack.block_state(names)
