"""Exact unlearning: S3T (sequence-aware sharded sliced LoRA blocks) and SISA, deletion capacity."""

from unlearnkit.exact.blocks import BlockTable
from unlearnkit.exact.capacity import s3t_capacity, simulate_capacity, sisa_capacity
from unlearnkit.exact.config import S3TConfig, SISAConfig
from unlearnkit.exact.ensemble import ENSEMBLES, RetrainTicket, ShardedEnsemble, load_ensemble
from unlearnkit.exact.partition import Partition
from unlearnkit.exact.recipe import EnsembleRecipe, build_ensemble, check_ensemble
from unlearnkit.exact.s3t import S3TEnsemble
from unlearnkit.exact.sequences import select_sequences
from unlearnkit.exact.sisa import SISAEnsemble
from unlearnkit.exact.stack import StackSpec

__all__ = [
    "ENSEMBLES",
    "BlockTable",
    "EnsembleRecipe",
    "Partition",
    "RetrainTicket",
    "S3TConfig",
    "S3TEnsemble",
    "SISAConfig",
    "SISAEnsemble",
    "ShardedEnsemble",
    "StackSpec",
    "build_ensemble",
    "check_ensemble",
    "load_ensemble",
    "s3t_capacity",
    "select_sequences",
    "simulate_capacity",
    "sisa_capacity",
]
