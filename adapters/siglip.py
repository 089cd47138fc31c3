"""SigLIP vision tower (Zhai et al. 2023) through ``transformers.SiglipVisionModel``.

The vision backbone of PaliGemma/Pi0 (and half of OpenVLA's). Entry ``siglip``. ``source``: a hub
id (``google/siglip-base-patch16-224``, ``google/siglip-so400m-patch14-384``...) or a local
``save_pretrained`` folder of a ``SiglipModel`` or ``SiglipVisionModel``. ``convert_siglip`` keeps
``vision_model.*`` (prefix stripped: the installed ``SiglipVisionModel`` holds its parameters at the
top level) and drops, by name, ``text_model.*``, ``logit_scale`` and ``logit_bias``.

Readout: SigLIP has no CLS token. ``cls`` = ``pooler_output``, the multi-head attention-pooling
("MAP") head over the final tokens, which is what SigLIP trains against the text tower.
``patches`` = ``last_hidden_state`` (already after ``post_layernorm``); every token is a patch.
A checkpoint without the head (``vision_use_head: false``) is rejected with an error, since its
``cls`` would be a different quantity.

Preprocessing (``transformers`` ``SiglipImageProcessor`` defaults, the record of the
``google/siglip-*`` checkpoints): squash-resize to 224 x 224 (no crop), bicubic, mean = std = 0.5.
Licence: Apache-2.0.
"""

from __future__ import annotations

import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from .base import EncoderAdapter, Features, InputContract
from .hf import build_hf_model, preprocessor_stats, select_prefix
from .registry import EncoderConfig, register_encoder

__all__ = ["SigLIPAdapter", "convert_siglip", "PRESETS"]

StateDict = dict[str, torch.Tensor]

# vision_config of google/siglip-base-patch16-224 and google/siglip-so400m-patch14-384.
PRESETS = {
    "b16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16, image_size=224),
    "so400m": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, patch_size=14, image_size=384),
}


def convert_siglip(state_dict: StateDict) -> StateDict:
    """``SiglipModel``/``SiglipVisionModel`` checkpoint -> ``SiglipVisionModel``: strip ``vision_model.``."""
    return select_prefix(state_dict, keep="vision_model.", drop=("text_model.", "logit_scale", "logit_bias"))


class SigLIPAdapter(EncoderAdapter):
    """``transformers.SiglipVisionModel`` behind the adapter interface."""

    def __init__(self, model: SiglipVisionModel, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        # Ask the module, not the config: older transformers have no vision_use_head field and wrap
        # the tower in .vision_model.
        if getattr(getattr(model, "vision_model", model), "head", None) is None:
            raise ValueError("this SigLIP checkpoint has no attention-pooling head (vision_use_head=false); "
                             "its cls readout is undefined here. Use a checkpoint with the head.")
        self.model = model
        self.embed_dim = model.config.hidden_size

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``curr [B, 3, H, W]`` -> cls = MAP-head ``pooler_output`` ``[B, D]``, patches ``[B, N, D]``."""
        # position embeddings are interpolated when the input is not the checkpoint's size
        out = self.model(pixel_values=curr, interpolate_pos_encoding=curr.shape[-1] != self.model.config.image_size)
        p = self.model.config.patch_size
        return Features(cls=out.pooler_output, patches=out.last_hidden_state, grid=(curr.shape[-2] // p, curr.shape[-1] // p))


@register_encoder("siglip")
def _siglip(cfg: EncoderConfig) -> SigLIPAdapter:
    preset = {**PRESETS[cfg.arch or "b16"], **({"image_size": cfg.img_size} if cfg.img_size else {})}
    model, directory = build_hf_model(
        SiglipVisionModel, SiglipVisionConfig, source=cfg.source, preset=preset,
        overrides=cfg.model_kwargs, convert=convert_siglip, encoder=cfg.name,
    )
    size = cfg.img_size or model.config.image_size
    stats = preprocessor_stats(directory) if directory else {}
    contract = InputContract(
        source=cfg.source or f"random init (SiglipVisionModel {cfg.arch or 'b16'})",
        resolution=(size, size),
        resize="squash",
        resize_uint8=True,
        interpolation="bicubic",
        mean=stats.get("image_mean", (0.5, 0.5, 0.5)),
        std=stats.get("image_std", (0.5, 0.5, 0.5)),
        frames_needed=1,
        licence="Apache-2.0",
        reference="transformers SiglipImageProcessor defaults (224x224, bicubic, IMAGENET_STANDARD mean/std 0.5)",
    )
    return SigLIPAdapter(model, contract, cfg.frames, cfg.autocast_bf16)
