"""Serving: each live shard's prefix through the shared stack, aggregated over shards.

``mean_logits`` averages the shards' logits; ``vote`` (SISA's option) averages one-hot
predictions, so the output is each class's share of the votes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unlearnkit.errors import ConflictError, UnlearnkitError
from unlearnkit.exact.blocks import Plan
from unlearnkit.exact.stack import LoRAStack
from unlearnkit.runtime.device import current_runtime


def _vote(logits: torch.Tensor) -> torch.Tensor:
    """Each shard contributes a one-hot of its prediction."""
    return torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()


AGGREGATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean_logits": lambda logits: logits,
    "vote": _vote,
}


@torch.no_grad()
def ensemble_logits(
    stack: LoRAStack,
    plan: Plan,
    x: torch.Tensor,
    aggregation: str = "mean_logits",
    batch_size: int = 512,
) -> torch.Tensor:
    """The mean over the shards in ``plan`` of each one's (aggregated) output on ``x``."""
    if not plan:
        raise ConflictError("every shard is dead: retrain (retrain_shard) before predicting")
    if aggregation not in AGGREGATIONS:
        raise UnlearnkitError(
            f"unknown aggregation {aggregation!r}; choose {' or '.join(AGGREGATIONS)}"
        )
    per_shard = AGGREGATIONS[aggregation]
    runtime = current_runtime()  # on its device and autocast; the sums in float32, on the CPU
    outs = []
    with runtime.placed(stack), runtime.autocast():
        for chunk in x.split(batch_size):
            chunk = runtime.tensor(chunk)
            total = None
            for shard in sorted(plan):
                seq, length = plan[shard]
                adapters, head = stack.prefix(shard, seq, length)
                out = per_shard(stack(chunk, adapters, head).float())
                total = out if total is None else total + out
            outs.append(runtime.to_cpu(total / len(plan)))
    return torch.cat(outs)
