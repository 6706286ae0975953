"""Visual prompt tuning (VPT) for any timm VisionTransformer, and the ``prompts`` mode.

Learnable prompt tokens are inserted after the prefix tokens (class and register tokens, if
any): *shallow* VPT inserts one set before the first block; *deep* VPT replaces them with a fresh
set before every block. The prompt tokens are dropped again after the final norm, so the head
pools exactly the tokens the plain ViT pools (class token, or the average of the patch tokens).
With the backbone frozen, prompts + head are Fast-NTK's trainable set for ViTs (well under 5% of
the model). The backbone lives in ``.vit`` so a plain ViT checkpoint loads with
``load_checkpoint(path, model.vit)``; ``add_visual_prompts(timm.create_model(...))`` wraps any
timm VisionTransformer, pretrained or not.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.peft import TRAINABLE, head_parameter_names
from unlearnkit.models.registry import MODELS
from unlearnkit.models.timm_models import vit_tiny

PROMPT_PARAM = "prompts"


class VisualPromptViT(nn.Module):
    """A timm VisionTransformer with prompt tokens (shape: sets x num_prompts x embed_dim)."""

    def __init__(self, vit: VisionTransformer, num_prompts: int = 5, deep: bool = False) -> None:
        super().__init__()
        if not isinstance(vit, VisionTransformer):
            raise UnlearnkitError(
                f"visual prompts need a timm VisionTransformer, got {type(vit).__name__}"
            )
        if num_prompts < 1:
            raise UnlearnkitError(f"num_prompts must be >= 1, got {num_prompts}")
        self.vit = vit
        self.deep = deep
        self.num_prompts = num_prompts
        sets = len(vit.blocks) if deep else 1
        width = vit.embed_dim
        bound = (6.0 / (width + num_prompts)) ** 0.5  # Xavier-uniform, as VPT initialises
        self.prompts = nn.Parameter(torch.empty(sets, num_prompts, width).uniform_(-bound, bound))

    def get_classifier(self) -> nn.Module:
        return self.vit.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.vit.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(x))))
        prefix = v.num_prefix_tokens
        for i, block in enumerate(v.blocks):
            if i == 0 or self.deep:
                prompt = self.prompts[i if self.deep else 0].expand(x.shape[0], -1, -1)
                rest = x[:, prefix:] if i == 0 else x[:, prefix + self.num_prompts :]
                x = torch.cat([x[:, :prefix], prompt.to(x.dtype), rest], dim=1)
            x = block(x)
        x = v.norm(x)
        return torch.cat([x[:, :prefix], x[:, prefix + self.num_prompts :]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.forward_features(x))


def add_visual_prompts(
    model: nn.Module, num_prompts: int = 5, deep: bool = False
) -> VisualPromptViT:
    """Wrap an existing (e.g. pretrained) ViT; the backbone modules are shared, not copied."""
    return VisualPromptViT(model, num_prompts, deep)


@MODELS.register("vit_tiny_vpt")
def vit_tiny_vpt(
    num_classes: int,
    in_chans: int,
    image_size: int,
    depth: int = 12,
    patch_size: int | None = None,
    num_prompts: int = 5,
    deep: bool = False,
) -> nn.Module:
    """vit_tiny with visual prompts (use with ``--peft prompts``)."""
    vit = vit_tiny(num_classes, in_chans, image_size, depth=depth, patch_size=patch_size)
    return VisualPromptViT(vit, num_prompts, deep)


@TRAINABLE.register("prompts")
def prompts_and_head(model: nn.Module) -> list[str]:
    """Prompt tokens plus the classifier head: Fast-NTK's ViT setting (backbone frozen)."""
    prompt_names = [
        n
        for n, _ in model.named_parameters()
        if n == PROMPT_PARAM or n.endswith("." + PROMPT_PARAM)
    ]
    if not prompt_names:
        raise UnlearnkitError(
            "trainable mode 'prompts' needs a ViT with visual prompts "
            "(model 'vit_tiny_vpt', or add_visual_prompts(model)); "
            "this model has none"
        )
    chosen = set(prompt_names) | set(head_parameter_names(model))
    return [name for name, _ in model.named_parameters() if name in chosen]
