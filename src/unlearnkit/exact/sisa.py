"""SISA (the baseline): one PEFT model per shard trained slice by slice, a checkpoint after each.

Stage k of a shard continues from checkpoint k-1 on slices 0..k; deleting from slice p serves
checkpoint p-1 and (policy ``eager``, the default) retrains the shard from there. Aggregation by
mean logits or majority vote.
"""

from __future__ import annotations

from unlearnkit.exact.capacity import sisa_capacity
from unlearnkit.exact.config import SISAConfig
from unlearnkit.exact.ensemble import ENSEMBLES, ShardedEnsemble


@ENSEMBLES.register("sisa")
class SISAEnsemble(ShardedEnsemble):
    """``SISAEnsemble.train(data, SISAConfig(...))``; same API as :class:`S3TEnsemble`."""

    scheme = "sisa"
    config_type = SISAConfig
    config: SISAConfig

    @classmethod
    def _sequences(cls, config: SISAConfig) -> list[tuple[int, ...]]:  # type: ignore[override]
        return [tuple(range(config.num_slices))]

    def capacity_theory(self) -> float:
        return sisa_capacity(self.config.num_shards, self.config.num_slices)

    def _aggregation(self) -> str:
        """``mean_logits`` or ``vote`` (output = vote shares); see ``serving.py``."""
        return self.config.aggregation
