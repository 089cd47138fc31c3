"""The one return type of every encoder of the model family."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["EncoderOutput"]


@dataclass
class EncoderOutput:
    """What an encoder returns for a batch of frame pairs.

    Attributes:
        cls: ``[B, D]`` the encoder's global embedding (fused CLS for two-stream models).
        patches: ``[B, N, D]`` one token per patch, row-major over ``grid`` (pixel-wise fused
            tokens for two-stream models).
        grid: ``(h, w)`` patch grid, ``N = h * w``.
        stream_cls: per-stream final CLS, ``{"m": [B, D], "p": [B, D]}`` for two-stream models,
            ``{"<stream>": [B, D]}`` for single-ViT models.
        stream_patches: per-stream patch tokens, same keys, ``[B, N, D]`` each.
        stage_cls: CLS of the appearance (P) stream after each of the 3 stages, ``[B, D]`` each;
            the last entry is the final CLS. Single-ViT models give their own stage CLS. The
            video decoder injects these.
    """

    cls: torch.Tensor
    patches: torch.Tensor
    grid: tuple[int, int]
    stream_cls: dict[str, torch.Tensor] = field(default_factory=dict)
    stream_patches: dict[str, torch.Tensor] = field(default_factory=dict)
    stage_cls: list[torch.Tensor] = field(default_factory=list)
