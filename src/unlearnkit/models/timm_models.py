"""timm backbones adapted to small images, built with random init (no hub downloads)."""

from __future__ import annotations

import timm
from torch import nn

from unlearnkit.models.registry import MODELS


@MODELS.register("resnet18")
def resnet18(num_classes: int, in_chans: int, image_size: int) -> nn.Module:
    """ResNet-18 with a CIFAR-style stem (3x3 stride-1 conv, no max-pool) for 8-32 px inputs."""
    model = timm.create_model(
        "resnet18", pretrained=False, num_classes=num_classes, in_chans=in_chans
    )
    if image_size <= 64:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def _patch_size(image_size: int) -> int:
    """About 16-64 tokens for small images: 2 px patches at 8x8, 4 px at 32x32."""
    for patch in (16, 8, 4, 2, 1):
        if image_size % patch == 0 and image_size // patch >= 4:
            return patch
    return 1


@MODELS.register("vit_tiny")
def vit_tiny(
    num_classes: int, in_chans: int, image_size: int, depth: int = 12, patch_size: int | None = None
) -> nn.Module:
    """ViT-Tiny (192 wide, 3 heads) with a patch size suited to the input size."""
    return timm.models.vision_transformer.VisionTransformer(
        img_size=image_size,
        patch_size=patch_size or _patch_size(image_size),
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=192,
        depth=depth,
        num_heads=3,
    )
