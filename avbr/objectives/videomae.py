"""The VideoMAE baseline: masked reconstruction of frame pairs with 75% tube masking.

Built on transformers' ``VideoMAEForPreTraining``, so masking and targets are VideoMAE's own:

- the model takes ``pixel_values [B, T, 3, H, W]`` normalised with the ImageNet mean/std (its
  targets un-normalise with those constants, ``IMAGENET_DEFAULT_MEAN/STD``);
- ``bool_masked_pos [B, (T / tubelet) * h * w]`` must be made by the caller, with the same number
  of masked tokens in every sample; we draw *tube* masks (VideoMAE's): one random spatial mask of
  ``round(mask_ratio * h * w)`` patches per sample, repeated over the temporal tubelets;
- the loss is the MSE on masked tokens against per-patch-normalised pixels (``norm_pix_loss``,
  VideoMAE's default).

A pair gives ``T = 2`` frames and ``tubelet_size = 2`` (one tubelet in time), as in seed 001's
"masked reconstruction (75%)" of ``(img_t, img_tk)``. The exported encoder is the
``VideoMAEModel`` (``save_pretrained`` directory), loadable with ``VideoMAEModel.from_pretrained``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import VideoMAEConfig, VideoMAEForPreTraining
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from avbr.models.vit import resolve_preset
from avbr.objectives.base import OBJECTIVES, Objective, ObjectiveSpec

__all__ = ["VideoMAE", "VideoMAEOptions", "tube_mask"]


def tube_mask(
    batch: int, spatial: int, temporal: int, ratio: float, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Tube masks: ``bool [B, temporal * spatial]``, True = masked, ``round(ratio * spatial)`` per tubelet.

    Token order is VideoMAE's (time-major: tubelet, then patch rows, then columns).
    """
    n_mask = int(round(ratio * spatial))
    noise = torch.rand(batch, spatial, device=device, generator=generator)  # [B, hw]
    rank = noise.argsort(dim=1).argsort(dim=1)  # [B, hw] rank of each patch's noise
    spatial_mask = rank < n_mask  # [B, hw], exactly n_mask True per row
    return spatial_mask.repeat(1, temporal)  # [B, temporal * hw]


@dataclass
class VideoMAEOptions:
    """VideoMAE options.

    Attributes:
        mask_ratio: fraction of spatial patches masked in every tube (VideoMAE: 0.75 for this seed).
        norm_pix_loss: regress per-patch-normalised pixels (VideoMAE's default).
    """

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")


@OBJECTIVES.register("videomae")
class VideoMAE(Objective):
    """VideoMAE pretraining on ``(img_t, img_{t+k})`` pairs.

    Args:
        spec: ``encoder_kwargs``: ``preset`` (``tiny|small|base``, the same widths as
            ``avbr.models``), ``img_size``, ``patch_size``, ``depth``; any other key is passed to
            ``VideoMAEConfig``. ``decoder_kwargs``: ``decoder_*`` fields of ``VideoMAEConfig``
            (default: VideoMAE's decoder, 384 wide, 4 layers, narrowed to the encoder width for
            ``tiny``). ``encoder`` is ignored (VideoMAE is its own ViT), ``gap`` too (VideoMAE does
            not weight gaps).
        cfg: ``VideoMAEOptions``.
    """

    name = "videomae"
    Config = VideoMAEOptions

    def __init__(self, spec: ObjectiveSpec, cfg: VideoMAEOptions) -> None:
        super().__init__()
        enc = dict(spec.encoder_kwargs)
        vit = resolve_preset(enc.pop("preset", "small"), enc.pop("depth", None))
        fields = dict(
            image_size=enc.pop("img_size", 224),
            patch_size=enc.pop("patch_size", 16),
            num_frames=2,
            tubelet_size=2,
            hidden_size=vit.embed_dim,
            num_hidden_layers=vit.depth,
            num_attention_heads=vit.num_heads,
            intermediate_size=int(vit.embed_dim * vit.mlp_ratio),
            decoder_hidden_size=min(384, vit.embed_dim),
            decoder_num_attention_heads=max(1, min(384, vit.embed_dim) // 64),
            decoder_intermediate_size=4 * min(384, vit.embed_dim),
            norm_pix_loss=cfg.norm_pix_loss,
            use_mean_pooling=False,
        )
        for key, value in {**enc, **spec.decoder_kwargs}.items():
            if not hasattr(VideoMAEConfig(), key):
                raise TypeError(f"unknown VideoMAEConfig field {key!r}; see transformers.VideoMAEConfig")
            fields[key] = value
        self.cfg = cfg
        self.model = VideoMAEForPreTraining(VideoMAEConfig(**fields))
        self.img_size = int(fields["image_size"])
        self.grid = self.img_size // int(fields["patch_size"])
        mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def encoder(self) -> nn.Module:
        return self.model.videomae

    def forward(
        self,
        prev: torch.Tensor,
        curr: torch.Tensor,
        gap: torch.Tensor,
        is_still: torch.Tensor,
        generator: torch.Generator | None = None,
        future: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        video = torch.stack([prev, curr], dim=1)  # [B, T=2, 3, H, W]
        pixel_values = (video - self.mean) / self.std  # ImageNet-normalised, as VideoMAE expects
        mask = tube_mask(prev.shape[0], self.grid * self.grid, 1, self.cfg.mask_ratio, prev.device, generator)
        out = self.model(pixel_values=pixel_values, bool_masked_pos=mask)
        return {"loss": out.loss}

    def export_encoder(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """``save_pretrained`` of the ``VideoMAEModel`` (the decoder is not exported)."""
        directory = Path(directory)
        self.model.videomae.save_pretrained(directory)
        return directory
