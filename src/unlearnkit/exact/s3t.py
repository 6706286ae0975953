"""S3T: per shard, B sequences of L LoRA blocks trained top-down on cumulative slices.

Deleting a sample in the slice at position p of a sequence switches off that sequence's blocks
p..L (no retraining); the shard serves its longest surviving prefix. See ``ensemble.py``.
"""

from __future__ import annotations

from unlearnkit.exact.capacity import s3t_capacity
from unlearnkit.exact.config import S3TConfig
from unlearnkit.exact.ensemble import ENSEMBLES, ShardedEnsemble
from unlearnkit.exact.sequences import select_sequences


@ENSEMBLES.register("s3t")
class S3TEnsemble(ShardedEnsemble):
    """``S3TEnsemble.train(data, S3TConfig(...))``, then ``delete``, ``predict_logits``..."""

    scheme = "s3t"
    config_type = S3TConfig
    config: S3TConfig

    @classmethod
    def _sequences(cls, config: S3TConfig) -> list[tuple[int, ...]]:  # type: ignore[override]
        return select_sequences(
            config.num_slices, config.num_sequences, config.deletion_prior, config.seed
        )

    def capacity_theory(self) -> float:
        return s3t_capacity(self.config.num_shards, self.config.num_slices, len(self.sequences))

    def _prior(self) -> list[float] | None:
        return self.config.deletion_prior
