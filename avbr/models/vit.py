"""The stream ViT: a plain ViT over any number of input channels, built from timm's blocks.

Each stream of the two-stream encoder (and each single-ViT baseline) is one ``StreamViT``. It is a
standard pre-norm ViT (timm ``PatchEmbed`` + ``Block``), with a CLS token and learned absolute
position embeddings, whose forward is split so that a caller can run the blocks stage by stage
(the two-stream encoder exchanges CLS tokens between stages).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from avbr.registry import UnknownNameError

__all__ = ["ViTPreset", "PRESETS", "resolve_preset", "StreamViT"]


@dataclass(frozen=True)
class ViTPreset:
    """Size of a stream ViT (the DeiT/ViT sizes: tiny 192/12/3, small 384/12/6, base 768/12/12)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


PRESETS: dict[str, ViTPreset] = {
    "tiny": ViTPreset(embed_dim=192, depth=12, num_heads=3),
    "small": ViTPreset(embed_dim=384, depth=12, num_heads=6),
    "base": ViTPreset(embed_dim=768, depth=12, num_heads=12),
}


def resolve_preset(preset: str, depth: int | None = None) -> ViTPreset:
    """The preset called ``preset``, with ``depth`` overridden when given (tests use shallow nets)."""
    if preset not in PRESETS:
        raise UnknownNameError(f"unknown ViT preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    return p if depth is None else ViTPreset(p.embed_dim, depth, p.num_heads, p.mlp_ratio)


class StreamViT(nn.Module):
    """ViT over ``in_chans`` input channels.

    Args:
        in_chans: number of input channels (4 for M, 5 for P, 9 for M+P, 6 for a raw frame pair).
        img_size: input resolution (square), divisible by ``patch_size``.
        patch_size: patch side in pixels.
        embed_dim: token width ``D``.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / ``D``.
        drop_path_rate: stochastic-depth rate of the last block (linearly increasing from 0).
    """

    def __init__(
        self,
        in_chans: int,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}")
        self.in_chans = in_chans
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        num_patches = self.grid[0] * self.grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r)
            for r in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patchify and add position embeddings.

        Args:
            x: ``[B, C, H, W]`` with ``C = in_chans`` and ``H = W = img_size``.

        Returns:
            tokens ``[B, 1 + N, D]`` (CLS first).
        """
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {x.shape[1]}")
        patches = self.patchify(x)  # [B, N, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # [B, 1, D]
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """The patch embedding ``[B, C, H, W] -> [B, N, D]`` as reshape + matmul.

        Same weights and math as timm's ``PatchEmbed`` (a stride-``p`` convolution): the conv
        weight ``[D, C, p, p]`` flattened to ``[D, C p p]`` applied to each patch flattened in
        ``(C, p, p)`` order. Why: cuDNN pads the 4- and 5-channel M/P inputs of the convolution to
        8 channels; a matmul over ``C p p`` features has no such padding (issue "Performance").
        """
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p)  # [B, C, gh, p, gw, p]
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)  # [B, N, C p p]
        proj = self.patch_embed.proj
        return F.linear(x, proj.weight.reshape(proj.weight.shape[0], -1), proj.bias)  # [B, N, D]

    def run_blocks(self, tokens: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Apply blocks ``start .. stop-1`` to ``tokens [B, 1 + N, D]``."""
        for block in self.blocks[start:stop]:
            tokens = block(tokens)
        return tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> final-normed tokens ``[B, 1 + N, D]``."""
        return self.norm(self.run_blocks(self.embed(x), 0, self.depth))


def _init_weights(module: nn.Module) -> None:
    """timm's ViT init: truncated-normal linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
