"""Vision backbones for the VLA swaps: any encoder of the registry (``avbr.adapters``).

A VLA's vision tower is an :class:`~avbr.adapters.EncoderAdapter` built by
:func:`avbr.adapters.build_encoder` from an :class:`~avbr.adapters.EncoderConfig`, so every
registered encoder (ours, DINOv2, CLIP, SigLIP, VideoMAE, R3M, timm ViTs) can be a backbone, with
its strict loading and its own input contract: the adapter resizes (squash or centre crop, as its
contract says) and normalises the uint8 frames; nothing in this package converts images.

* backbone input: uint8 ``prev``/``curr`` ``[B, H, W, 3]`` upright RGB (``prev`` is used by
  two-frame encoders and by ``frames: both``);
* backbone output: ``adapter.encode(prev, curr).patches`` ``[B, N, D]`` on the grid ``(h, w)``,
  ``D = adapter.feature_dim``.

:class:`VisionTokens` is the Pi0 swap: backbone -> token budget (adaptive average pooling of the
patch grid to at most ``max_tokens``) -> projector MLP to the language-model width.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avbr.adapters import EncoderAdapter, EncoderConfig, build_encoder

Frames = Tensor | np.ndarray


@dataclass
class BackboneConfig:
    """Which registry encoder replaces the VLA's own vision tower.

    Attributes:
        encoder: the encoder, as in the ``encoder`` config group (``name``, ``source``, ``arch``,
            ``img_size``, ``frames``, ``model_kwargs``; see :class:`avbr.adapters.EncoderConfig`).
            ``source: null`` is a random initialisation (tests, smoke runs). ``encoder.device``
            must stay ``auto``/``cpu``: the backbone is built on the CPU and moves with the policy
            (``policy.to(device)``, the fine-tuning ``device`` setting).
        freeze: keep the encoder weights fixed during fine-tuning (the projector still trains).
        max_tokens: image-token budget; the patch grid is average-pooled to at most this many
            tokens (``0`` keeps every patch).
    """

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="two_stream", arch="tiny"))
    freeze: bool = False
    max_tokens: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if self.encoder.device not in ("auto", "cpu"):
            raise ValueError(
                f"backbone.encoder.device={self.encoder.device!r}: the VLA moves to its device as a whole; "
                "drop backbone.encoder.device and set the fine-tuning device (device=cuda) instead."
            )
        if self.max_tokens < 0:
            raise ValueError(f"backbone.max_tokens must be >= 0 (0 = no budget), got {self.max_tokens}")


def build_backbone(cfg: BackboneConfig) -> EncoderAdapter:
    """The registry encoder ``cfg.encoder`` (strictly loaded when it has a ``source``) on torch's
    default device (the CPU, or ``meta`` inside ``with torch.device("meta")``); frozen if
    ``cfg.freeze``."""
    adapter = build_encoder(dataclasses.replace(cfg.encoder, device=str(torch.get_default_device())))
    if cfg.freeze:
        adapter.requires_grad_(False)
    return adapter


def encode_patches(backbone: EncoderAdapter, prev: Frames, curr: Frames) -> tuple[Tensor, tuple[int, int]]:
    """uint8 frames ``[B, H, W, 3]`` -> ``(patches [B, N, D], grid (h, w))`` through the adapter's
    own preprocessing (:meth:`~avbr.adapters.EncoderAdapter.encode`)."""
    feats = backbone.encode(prev, curr)
    return feats.patches, feats.grid


def pooled_grid(grid: tuple[int, int], max_tokens: int) -> tuple[int, int]:
    """The largest grid ``(h', w')`` with ``h' <= h``, ``w' <= w``, aspect kept, ``h' * w' <= max_tokens``."""
    h, w = grid
    if max_tokens == 0 or h * w <= max_tokens:
        return h, w
    scale = math.sqrt(max_tokens / (h * w))
    hp, wp = max(1, int(h * scale)), max(1, int(w * scale))
    return hp, wp


def pool_tokens(patches: Tensor, grid: tuple[int, int], max_tokens: int) -> Tensor:
    """Average-pool a patch grid down to the token budget.

    Args:
        patches: ``[B, N, D]`` with ``N == h * w`` (row-major grid).
        grid: ``(h, w)``.
        max_tokens: budget (``0`` = keep all).

    Returns:
        ``[B, N', D]`` with ``N' <= max_tokens`` (or ``N`` when the budget is not exceeded).
    """
    h, w = grid
    b, n, d = patches.shape
    if n != h * w:
        raise ValueError(f"patches have N={n} tokens but grid {grid} has {h * w}")
    hp, wp = pooled_grid(grid, max_tokens)
    if (hp, wp) == (h, w):
        return patches
    x = patches.transpose(1, 2).reshape(b, d, h, w)  # [B, N, D] -> [B, D, h, w]
    x = F.adaptive_avg_pool2d(x, (hp, wp))  # [B, D, h', w']
    return x.flatten(2).transpose(1, 2)  # [B, D, h'w'] -> [B, N', D]


class MLPProjector(nn.Module):
    """Two-layer GELU MLP from the encoder width to the language-model width.

    Args:
        in_dim: encoder width ``D``.
        out_dim: language-model width.
        hidden_dim: hidden width (defaults to ``out_dim``).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or out_dim
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N, in_dim] -> [B, N, out_dim]``."""
        return self.fc2(self.act(self.fc1(self.norm(x))))


class VisionTokens(nn.Module):
    """Backbone -> token budget -> projector: the image tokens a VLA's language model reads.

    Args:
        backbone: a registry encoder (:func:`build_backbone`).
        out_dim: language-model width.
        max_tokens: image-token budget (``0`` = all patches).
    """

    def __init__(self, backbone: EncoderAdapter, out_dim: int, max_tokens: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = MLPProjector(backbone.feature_dim, out_dim)
        self.max_tokens = max_tokens

    def forward(self, prev: Frames, curr: Frames) -> Tensor:
        """uint8 frames ``[B, H, W, 3]`` -> image tokens ``[B, N', out_dim]``."""
        patches, grid = encode_patches(self.backbone, prev, curr)  # [B, N, D]
        return self.projector(pool_tokens(patches, grid, self.max_tokens))  # [B, N', out_dim]
