"""Fusion of the M and P streams (seed 002).

Three families, each a registry so that a config names the option:

- ``PIXEL_FUSIONS``: per-position patch fusion ``[B, N, D] x 2 -> [B, N, D]``. Every output token
  depends only on the two input tokens at the same position, so the patch grid keeps its meaning
  ("what changed *where*").
    - ``separate``: a linear map of the concatenated pair, with its own weights (the CLS tokens
      are fused by the CLS-fusion module);
    - ``shared``: one linear map for the CLS pair and every patch pair (the CLS-fusion module is
      then this same map);
    - ``mlp``: a 2-layer MLP ``2D -> 2D -> D`` per position.
- ``CLS_FUSIONS``: ``[B, D] x 2 -> [B, D]``: ``linear``, ``mlp``, ``cross_attention`` (a transformer
  layer over the 2-token sequence, then the mean), ``gating`` (``g * m + (1 - g) * p`` with
  ``g = sigmoid(w . [m; p])``).

The aggregation ablation of seed 002 (A avg+late, B avg+early, C pixel-wise, D all patches+late)
reads encoder features, so it is a readout: ``agg_a .. agg_d`` in :mod:`avbr.adapters.readouts`.
"""

from __future__ import annotations

import torch
from torch import nn

from avbr.registry import Registry

__all__ = ["PIXEL_FUSIONS", "CLS_FUSIONS", "build_pixel_fusion", "build_cls_fusion"]

PIXEL_FUSIONS: Registry[type[nn.Module]] = Registry("pixel fusion")
CLS_FUSIONS: Registry[type[nn.Module]] = Registry("CLS fusion")


class _PairLinear(nn.Module):
    """``Linear(2D -> D)`` over the concatenation of two token tensors ``[..., D]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([m, p], dim=-1))


class _PairMLP(nn.Module):
    """``2D -> hidden -> D`` MLP over the concatenation of two token tensors ``[..., D]``."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([m, p], dim=-1))


@PIXEL_FUSIONS.register("separate")
class SeparatePixelFusion(_PairLinear):
    """Per-position ``Linear(2D -> D)`` for patches only: ``[B, N, D] x 2 -> [B, N, D]``."""

    shares_cls = False


@PIXEL_FUSIONS.register("shared")
class SharedPixelFusion(_PairLinear):
    """One ``Linear(2D -> D)`` applied to the CLS pair and to every patch pair."""

    shares_cls = True


@PIXEL_FUSIONS.register("mlp")
class MLPPixelFusion(_PairMLP):
    """Per-position MLP ``2D -> 2D -> D``: ``[B, N, D] x 2 -> [B, N, D]``."""

    shares_cls = False


@CLS_FUSIONS.register("linear")
class LinearCLSFusion(_PairLinear):
    """``[B, D] x 2 -> [B, D]`` by ``Linear([m; p])``."""


@CLS_FUSIONS.register("mlp")
class MLPCLSFusion(_PairMLP):
    """``[B, D] x 2 -> [B, D]`` by a 2-layer MLP of ``[m; p]``."""


@CLS_FUSIONS.register("cross_attention")
class CrossAttentionCLSFusion(nn.Module):
    """A pre-norm transformer layer over the 2-token sequence ``[m, p]``, then the mean: ``[B, D]``."""

    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        heads = num_heads if dim % num_heads == 0 else 1
        self.layer = nn.TransformerEncoderLayer(
            d_model=dim, nhead=heads, dim_feedforward=4 * dim, batch_first=True, norm_first=True
        )

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([m, p], dim=1)  # [B, 2, D]
        return self.layer(tokens).mean(dim=1)


@CLS_FUSIONS.register("gating")
class GatingCLSFusion(nn.Module):
    """``g * m + (1 - g) * p`` with a scalar gate ``g = sigmoid(Linear([m; p]))`` per sample."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, 1)

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([m, p], dim=-1)))  # [B, 1]
        return g * m + (1 - g) * p


def build_pixel_fusion(name: str, dim: int) -> nn.Module:
    """Pixel-wise fusion ``name`` (``separate | shared | mlp``) for width ``dim``."""
    return PIXEL_FUSIONS.get(name)(dim)


def build_cls_fusion(name: str, dim: int) -> nn.Module:
    """CLS fusion ``name`` (``linear | mlp | cross_attention | gating``) for width ``dim``."""
    return CLS_FUSIONS.get(name)(dim)

