"""VideoMAE (Tong et al. 2022) through ``transformers.VideoMAEModel``: the hub model and ours.

Entries:
    ``videomae``: the transformers format, default hub id ``MCG-NJU/videomae-base``
        (16 frames, tubelet 2, 224 px).
    ``videomae_ours``: our masked-video baseline, a ``save_pretrained`` folder written by the
        pretraining code (``avbr.objectives``), normally 2 frames with tubelet 2.

``source`` (both): a hub id or a local ``save_pretrained`` folder of a ``VideoMAEForPreTraining``
(keys ``videomae.*`` plus the decoder) or a bare ``VideoMAEModel``. ``convert_videomae`` strips the
``videomae.`` prefix, drops by name the pretraining-only tensors (``decoder.*``,
``encoder_to_decoder.*``, ``mask_token``), and renames the on-disk ``attention.attention.q_bias`` /
``v_bias`` to the installed transformers' ``query.bias`` / ``value.bias``.

How a frame pair becomes a clip: the model's ``config.num_frames`` (F) is kept, the clip is
``F/2`` copies of ``prev`` followed by ``F/2`` copies of ``curr``. For ours (F = 2, tubelet 2)
this is exactly one tubelet holding (prev, curr); for the hub model (F = 16) it is 4 tubelets of
``prev`` then 4 of ``curr``, the only input its fixed sinusoidal position table accepts. A still
image (``prev=None``) repeats ``curr``.

Readout: VideoMAE has no CLS token. ``patches [B, N, D]`` = the final tokens averaged over the
tubelet (time) axis, one token per spatial patch; ``cls [B, D]`` = the mean of all tokens, the
pooling VideoMAE's own classifier uses (``use_mean_pooling``). No mask is applied at feature
time (``bool_masked_pos=None``).

Preprocessing: 224 px, short side 224 then center crop, bilinear (also what our pretraining data
pipeline does, ``avbr.data.mixture.resize_center_crop``), ImageNet mean/std
(VideoMAE's ``IMAGENET_DEFAULT_MEAN/STD``, recorded in ``MCG-NJU/videomae-base``
``preprocessor_config.json``; its pixel-reconstruction targets assume it). A folder's own
``preprocessor_config.json`` wins. Licence: CC-BY-NC-4.0 (MCG-NJU weights); ours: MIT.
"""

from __future__ import annotations

import torch
from transformers import VideoMAEConfig, VideoMAEModel

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderAdapter, Features, InputContract
from .hf import build_hf_model, preprocessor_stats, rename_keys, select_prefix
from .registry import EncoderConfig, register_encoder

__all__ = ["VideoMAEAdapter", "convert_videomae", "PRESETS"]

StateDict = dict[str, torch.Tensor]

# MCG-NJU/videomae-base config.json (ViT-B/16, tubelet 2); "small" as MCG-NJU/videomae-small-*.
PRESETS = {
    "small": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
}


def convert_videomae(state_dict: StateDict) -> StateDict:
    """``VideoMAEForPreTraining`` or ``VideoMAEModel`` checkpoint -> ``VideoMAEModel``."""
    sd = select_prefix(state_dict, keep="videomae.", drop=("decoder.", "encoder_to_decoder.", "mask_token"))
    return rename_keys(sd, [("attention.attention.q_bias", "attention.attention.query.bias"),
                            ("attention.attention.v_bias", "attention.attention.value.bias")])


class VideoMAEAdapter(EncoderAdapter):
    """``transformers.VideoMAEModel`` behind the adapter interface (a two-frame encoder)."""

    def __init__(self, model: VideoMAEModel, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        if model.config.num_frames % 2:
            raise ValueError(f"VideoMAE num_frames must be even to hold a (prev, curr) pair, got {model.config.num_frames}")
        self.model = model
        self.embed_dim = model.config.hidden_size

    def clip(self, prev: torch.Tensor | None, curr: torch.Tensor) -> torch.Tensor:
        """``prev, curr [B, 3, H, W]`` -> ``[B, F, 3, H, W]``: F/2 copies of prev, then of curr."""
        half = self.model.config.num_frames // 2
        prev = curr if prev is None else prev
        return torch.stack([prev] * half + [curr] * half, dim=1)

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``prev, curr [B, 3, H, W]`` -> cls ``[B, D]`` (mean of all tokens), patches ``[B, N, D]``
        (mean over the tubelet axis)."""
        tokens = self.model(pixel_values=self.clip(prev, curr)).last_hidden_state  # [B, T' * N, D]
        p = self.model.config.patch_size
        grid = (curr.shape[-2] // p, curr.shape[-1] // p)
        b, _, d = tokens.shape
        per_time = tokens.reshape(b, -1, grid[0] * grid[1], d)  # [B, T', N, D], time-major as patchified
        return Features(cls=tokens.mean(1), patches=per_time.mean(1), grid=grid)


def _build(cfg: EncoderConfig, num_frames: int, licence: str) -> VideoMAEAdapter:
    preset = {**PRESETS[cfg.arch or "base"], "patch_size": 16, "tubelet_size": 2, "num_frames": num_frames,
              "image_size": cfg.img_size or 224}
    model, directory = build_hf_model(
        VideoMAEModel, VideoMAEConfig, source=cfg.source, preset=preset, overrides=cfg.model_kwargs,
        convert=convert_videomae, encoder=cfg.name,
    )
    size = model.config.image_size
    if cfg.img_size not in (None, size):
        raise ValueError(f"this VideoMAE checkpoint runs at {size} px (fixed position table); drop encoder.img_size={cfg.img_size}")
    stats = preprocessor_stats(directory) if directory else {}
    contract = InputContract(
        source=cfg.source or f"random init (VideoMAEModel {cfg.arch or 'base'}, {num_frames} frames)",
        resolution=(size, size),
        resize="center_crop",
        crop_pct=1.0,
        interpolation="bilinear",
        mean=stats.get("image_mean", IMAGENET_MEAN),
        std=stats.get("image_std", IMAGENET_STD),
        frames_needed=2,
        licence=licence,
        reference="MCG-NJU/videomae-base preprocessor_config.json (ImageNet mean/std, shortest_edge 224, bilinear)",
    )
    return VideoMAEAdapter(model, contract, cfg.frames, cfg.autocast_bf16)


@register_encoder("videomae")
def _videomae(cfg: EncoderConfig) -> VideoMAEAdapter:
    return _build(cfg, num_frames=16, licence="CC-BY-NC-4.0")


@register_encoder("videomae_ours")
def _videomae_ours(cfg: EncoderConfig) -> VideoMAEAdapter:
    return _build(cfg, num_frames=2, licence="MIT")
