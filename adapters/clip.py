"""CLIP vision tower (Radford et al. 2021) through ``transformers.CLIPVisionModel``.

Entry ``clip``. ``source``: a hub id (``openai/clip-vit-base-patch16``, ``-large-patch14``...) or a
local ``save_pretrained`` folder of a ``CLIPModel`` or ``CLIPVisionModel``. ``convert_clip`` keeps
the ``vision_model.*`` tensors (prefix stripped) and drops, by name, the text tower and the
contrastive heads (``text_model.*``, ``text_projection.*``, ``visual_projection.*``,
``logit_scale``) and the ``vision_model.embeddings.position_ids`` buffer old checkpoints stored.

Readout: ``cls`` = ``pooler_output``, the CLS token after ``post_layernorm`` (what CLIP's
``visual_projection`` consumes; ``last_hidden_state`` is *not* normalised). ``patches`` = the
patch tokens of ``last_hidden_state`` passed through the same ``post_layernorm``, so that cls and
patches share one normalisation.

Preprocessing (``transformers`` ``CLIPImageProcessor`` defaults, the record of the OpenAI
checkpoints; constants ``OPENAI_CLIP_MEAN``/``OPENAI_CLIP_STD`` from openai/CLIP ``clip.py``):
short side 224 then center crop 224, bicubic, mean (0.4815, 0.4578, 0.4082), std (0.2686, 0.2613,
0.2758). Licence: MIT.
"""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .base import EncoderAdapter, Features, InputContract
from .hf import build_hf_model, preprocessor_stats, select_prefix
from .registry import EncoderConfig, register_encoder

__all__ = ["CLIPAdapter", "convert_clip", "PRESETS"]

StateDict = dict[str, torch.Tensor]

# vision_config of openai/clip-vit-base-patch16, -base-patch32 and -large-patch14 (config.json).
PRESETS = {
    "b16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16),
    "b32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32),
    "l14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14),
}
_COMMON = dict(image_size=224, hidden_act="quick_gelu", projection_dim=512)

# `vision_model.embeddings.position_ids` is a buffer that transformers < 4.31 saved (the OpenAI
# conversions on the hub still hold it); the installed version recomputes it (non-persistent).
_DROP = ("text_model.", "text_projection.", "visual_projection.", "logit_scale", "vision_model.embeddings.position_ids")


def convert_clip(state_dict: StateDict) -> StateDict:
    """``CLIPModel``/``CLIPVisionModel`` checkpoint -> the installed ``CLIPVisionModel``, whose
    parameters sit at the top level (``embeddings.*``, ``encoder.*``...): strip ``vision_model.``."""
    return select_prefix(state_dict, keep="vision_model.", drop=_DROP)


class CLIPAdapter(EncoderAdapter):
    """``transformers.CLIPVisionModel`` behind the adapter interface."""

    def __init__(self, model: CLIPVisionModel, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        self.model = model
        self.embed_dim = model.config.hidden_size

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``curr [B, 3, H, W]`` -> cls = ``pooler_output`` ``[B, D]``, patches ``[B, N, D]``
        (post-LayerNorm)."""
        # position embeddings are interpolated when the input is not the checkpoint's size
        out = self.model(pixel_values=curr, interpolate_pos_encoding=curr.shape[-1] != self.model.config.image_size)
        patches = self.model.post_layernorm(out.last_hidden_state[:, 1:])  # [B, N, D]
        p = self.model.config.patch_size
        return Features(cls=out.pooler_output, patches=patches, grid=(curr.shape[-2] // p, curr.shape[-1] // p))


@register_encoder("clip")
def _clip(cfg: EncoderConfig) -> CLIPAdapter:
    preset = {**_COMMON, **PRESETS[cfg.arch or "b16"], **({"image_size": cfg.img_size} if cfg.img_size else {})}
    model, directory = build_hf_model(
        CLIPVisionModel, CLIPVisionConfig, source=cfg.source, preset=preset,
        overrides=cfg.model_kwargs, convert=convert_clip, encoder=cfg.name,
    )
    size = cfg.img_size or model.config.image_size
    stats = preprocessor_stats(directory) if directory else {}
    contract = InputContract(
        source=cfg.source or f"random init (CLIPVisionModel {cfg.arch or 'b16'})",
        resolution=(size, size),
        resize="center_crop",
        crop_pct=1.0,
        crop_offset="floor",
        resize_uint8=True,
        interpolation="bicubic",
        mean=stats.get("image_mean", tuple(OPENAI_CLIP_MEAN)),
        std=stats.get("image_std", tuple(OPENAI_CLIP_STD)),
        frames_needed=1,
        licence="MIT",
        reference="transformers CLIPImageProcessor defaults / openai/CLIP clip.py _transform",
    )
    return CLIPAdapter(model, contract, cfg.frames, cfg.autocast_bf16)
