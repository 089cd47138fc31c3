"""Vision backbones for the VLA swaps: any encoder that maps (prev, curr) frames to patch tokens.

The VLA adapters never see a concrete encoder class. They talk to a :class:`VisionBackbone`:

* ``forward(prev, curr) -> (patches [B, N, D], grid (h, w))`` with frames float ``[B, 3, H, W]``
  in ``[0, 1]`` at ``img_size`` (``prev`` may be ``None`` for one-frame encoders);
* ``out_dim`` (``D``), ``frames_needed`` (1 or 2) and ``img_size`` (square input side, pixels).

Each backbone owns its own normalisation (docs/CONVENTIONS.md): the AVBR encoders take ``[0, 1]``
frames as they are, the timm wrapper applies the model's ``pretrained_cfg`` mean/std.

Two sources are registered in :data:`BACKBONES`:

* ``avbr``: any ``avbr.models`` encoder (``two_stream``, ``single_stream``, ``m_only`` ...), built
  through ``avbr.models.build_model`` or loaded from an encoder directory (``load_encoder``);
* ``timm``: a timm ViT (``vit_tiny_patch16_224`` ...), one frame, prefix tokens dropped.

:class:`VisionTokens` is the Pi0 swap: backbone -> token budget (adaptive average pooling of the
patch grid to at most ``max_tokens``) -> projector MLP to the language-model width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry


@dataclass
class BackboneConfig:
    """Which vision encoder replaces the VLA's own vision tower.

    Attributes:
        source: registry name in :data:`BACKBONES` (``avbr`` | ``timm``).
        model: the model name inside that source: an ``avbr.models`` registry name
            (``two_stream``, ``single_stream``, ``m_only``, ...) or a timm model name.
        kwargs: extra keyword arguments for the builder (``preset: tiny``, ``patch_size: 16`` ...).
        img_size: square input resolution in pixels; frames are resized to it.
        checkpoint: optional encoder directory (``avbr.models.save_encoder`` layout) to load
            strictly; ``None`` keeps the random initialisation (tests, smoke runs).
        freeze: keep the encoder weights fixed during fine-tuning (the projector still trains).
        max_tokens: image-token budget; the patch grid is average-pooled to at most this many
            tokens (``0`` keeps every patch).
    """

    source: str = "avbr"
    model: str = "two_stream"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})
    img_size: int = 224
    checkpoint: str | None = None
    freeze: bool = False
    max_tokens: int = 64

    def __post_init__(self) -> None:
        if self.img_size <= 0:
            raise ValueError(f"backbone.img_size must be positive, got {self.img_size}")
        if self.max_tokens < 0:
            raise ValueError(f"backbone.max_tokens must be >= 0 (0 = no budget), got {self.max_tokens}")


class VisionBackbone(nn.Module):
    """Base class of the encoders the VLAs accept.

    Subclasses set ``out_dim``, ``frames_needed`` and ``img_size`` and implement :meth:`forward`.
    """

    out_dim: int
    frames_needed: int
    img_size: int

    def forward(self, prev: Tensor | None, curr: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Encode frames.

        Args:
            prev: previous frame, float ``[B, 3, H, W]`` in ``[0, 1]``, or ``None``.
            curr: current frame, float ``[B, 3, H, W]`` in ``[0, 1]``.

        Returns:
            ``(patches [B, N, D], grid (h, w))`` with ``N == h * w`` and ``D == out_dim``.
        """
        raise NotImplementedError


class AvbrEncoderBackbone(VisionBackbone):
    """Wraps an ``avbr.models`` encoder (``forward(prev, curr) -> EncoderOutput``).

    Args:
        encoder: module with ``embed_dim``, ``frames_needed``, ``img_size`` and a forward that
            returns an object with ``.patches [B, N, D]`` and ``.grid (h, w)``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        for attr in ("embed_dim", "frames_needed", "img_size"):
            if not hasattr(encoder, attr):
                raise TypeError(
                    f"{type(encoder).__name__} lacks `{attr}`; avbr encoders must follow "
                    "docs/CONVENTIONS.md (embed_dim, frames_needed, img_size, forward(prev, curr))."
                )
        self.encoder = encoder
        self.out_dim = int(encoder.embed_dim)
        self.frames_needed = int(encoder.frames_needed)
        img_size = encoder.img_size
        self.img_size = int(img_size[0] if isinstance(img_size, (tuple, list)) else img_size)

    def forward(self, prev: Tensor | None, curr: Tensor) -> tuple[Tensor, tuple[int, int]]:
        out = self.encoder(prev if self.frames_needed == 2 else None, curr)
        return out.patches, tuple(out.grid)


class TimmViTBackbone(VisionBackbone):
    """Wraps a timm ViT: one frame, ImageNet-style normalisation, prefix (CLS/register) tokens dropped.

    Args:
        model: a timm ``VisionTransformer`` built with ``num_classes=0``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out_dim = int(model.embed_dim)
        self.frames_needed = 1
        self.img_size = int(model.patch_embed.img_size[0])
        cfg = model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, prev: Tensor | None, curr: Tensor) -> tuple[Tensor, tuple[int, int]]:
        tokens = self.model.forward_features((curr - self.mean) / self.std)  # [B, P + N, D]
        patches = tokens[:, self.model.num_prefix_tokens :]  # [B, N, D]
        h, w = self.model.patch_embed.grid_size
        return patches, (int(h), int(w))


BACKBONES: Registry = Registry("vision backbone source")


@BACKBONES.register("avbr")
def _build_avbr(cfg: BackboneConfig) -> VisionBackbone:
    try:
        from avbr import models as avbr_models
    except ImportError as err:  # the package exists but may predate avbr.models.build_model
        raise ImportError(f"backbone.source=avbr needs avbr.models ({err}); reinstall the package.") from err
    for fn in ("build_model", "load_encoder"):
        if not hasattr(avbr_models, fn):
            raise ImportError(
                f"avbr.models has no `{fn}` yet; use backbone.source=timm until the encoder "
                "registry lands (docs/CONVENTIONS.md)."
            )
    if cfg.checkpoint:
        encoder = avbr_models.load_encoder(cfg.checkpoint)
    else:
        encoder = avbr_models.build_model(cfg.model, img_size=cfg.img_size, **cfg.kwargs)
    return AvbrEncoderBackbone(encoder)


@BACKBONES.register("timm")
def _build_timm(cfg: BackboneConfig) -> VisionBackbone:
    import timm

    if cfg.checkpoint:
        raise ValueError(
            "backbone.source=timm takes no checkpoint directory here; build the model with "
            "pretrained weights through the encoder registry (avbr.adapters) instead."
        )
    model = timm.create_model(cfg.model, pretrained=False, num_classes=0, img_size=cfg.img_size, **cfg.kwargs)
    if not hasattr(model, "patch_embed") or not hasattr(model, "num_prefix_tokens"):
        raise TypeError(f"timm model {cfg.model!r} is not a ViT with patch tokens; pick a vit_* model.")
    return TimmViTBackbone(model)


def build_backbone(cfg: BackboneConfig) -> VisionBackbone:
    """Build the backbone named by ``cfg.source`` / ``cfg.model``; freezes it if ``cfg.freeze``."""
    backbone = BACKBONES.get(cfg.source)(cfg)
    if backbone.img_size != cfg.img_size:
        raise ValueError(
            f"backbone img_size {backbone.img_size} != backbone.img_size {cfg.img_size}; the encoder "
            "checkpoint fixes the resolution, set backbone.img_size to match it."
        )
    if cfg.freeze:
        backbone.requires_grad_(False)
    return backbone


def frames_to_float(frames: Tensor | np.ndarray, size: int, device: torch.device | str | None = None) -> Tensor:
    """uint8 HWC frames -> float CHW frames in ``[0, 1]`` at ``size`` x ``size``.

    This is the single place in the VLA package where images change layout.

    Args:
        frames: uint8 ``[B, H, W, 3]`` (numpy or torch), upright RGB.
        size: output side in pixels (bilinear resize when it differs).
        device: target device (defaults to the input's).

    Returns:
        float32 ``[B, 3, size, size]`` in ``[0, 1]``.
    """
    x = torch.as_tensor(frames, device=device)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [B, H, W, 3], got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 3, 1, 2).float() / 255.0  # [B, H, W, 3] -> [B, 3, H, W]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0)


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
        backbone: any :class:`VisionBackbone`.
        out_dim: language-model width.
        max_tokens: image-token budget (``0`` = all patches).
    """

    def __init__(self, backbone: VisionBackbone, out_dim: int, max_tokens: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = MLPProjector(backbone.out_dim, out_dim)
        self.max_tokens = max_tokens

    def forward(self, prev: Tensor | None, curr: Tensor) -> Tensor:
        """Frames float ``[B, 3, H, W]`` in ``[0, 1]`` -> image tokens ``[B, N', out_dim]``."""
        patches, grid = self.backbone(prev, curr)  # [B, N, D]
        return self.projector(pool_tokens(patches, grid, self.max_tokens))  # [B, N', out_dim]
