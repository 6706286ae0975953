"""Shard training through Ray gives the same blocks as in process (slow: starts Ray)."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.exact import S3TEnsemble
from unlearnkit.runtime import create_executor


@pytest.mark.slow
def test_ray_local_cluster_trains_the_same_ensemble(small, backbone, s3t_config) -> None:
    pytest.importorskip("ray")
    train, test = small
    local = S3TEnsemble.train(train, s3t_config(), num_classes=10, backbone_state=backbone)
    with create_executor("ray", num_cpus=2) as ray:
        remote = S3TEnsemble.train(
            train, s3t_config(), ray, num_classes=10, backbone_state=backbone
        )
        x = remote.partition.members(0, 0)[0]
        remote.delete([x])
        remote.retrain_shard(0)  # the retrain runs on Ray too
    local.delete([x])
    local.retrain_shard(0)
    assert torch.equal(remote.predict_logits(test.x), local.predict_logits(test.x))
