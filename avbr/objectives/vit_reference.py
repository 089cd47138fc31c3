"""A plain timm ViT trained by patch regression: the FLOP-matched reference of the pretraining bench.

Not a research objective (it is not in ``OBJECTIVES``): ``eval/bench.py pretrain`` trains it with
the same loop as the two-stream models to show what MFU a plain ViT of the same total FLOPs gets
on the same machine.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["ViTReference"]


class ViTReference(nn.Module):
    """timm ``VisionTransformer`` (random init) + a linear head regressing each patch's pixels.

    Loss: ``mean((head(tokens_n) - patch_n(curr))^2)`` over patches ``n`` of ``curr``; ``prev``,
    ``gap``, ``is_still`` and ``future`` are ignored. Same call signature as an ``Objective``.

    Args:
        img_size: input side.
        patch_size: patch side.
        embed_dim: width ``D``.
        depth: number of blocks.
        num_heads: attention heads (timm's fused SDPA attention).
    """

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.vit = VisionTransformer(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, num_classes=0, global_pool="token",
        )
        self.head = nn.Linear(embed_dim, 3 * patch_size * patch_size)
        self.patch_size = patch_size
        self.img_size = img_size

    def forward(
        self,
        prev: torch.Tensor,
        curr: torch.Tensor,
        gap: torch.Tensor,
        is_still: torch.Tensor,
        generator: torch.Generator | None = None,
        future: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        b, c, h, w = curr.shape
        p = self.patch_size
        tokens = self.vit.forward_features(curr)[:, self.vit.num_prefix_tokens :]  # [B, N, D]
        pred = self.head(tokens)  # [B, N, 3 p p]
        target = curr.reshape(b, c, h // p, p, w // p, p)  # [B, 3, h, p, w, p]
        target = target.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)  # [B, N, 3 p p]
        return {"loss": (pred.float() - target).pow(2).mean()}
