"""DINOv2 (Oquab et al. 2023) in its two public formats.

Entries:
    ``dinov2_hf``: ``transformers.Dinov2Model``. ``source``: a hub id (``facebook/dinov2-small``,
        ``-base``, ``-large``) or a local ``save_pretrained`` folder. ``convert_hf_dinov2`` renames
        the on-disk attention weights to the installed transformers' names
        (``attention.attention.{query,key,value}`` -> ``attention.{q,k,v}_proj``,
        ``attention.output.dense`` -> ``attention.o_proj``; the SwiGLU ``mlp.weights_in`` of the
        giant model is split into ``gate_proj``/``up_proj``, ``weights_out`` -> ``down_proj``).
        transformers interpolates the 518-px position embeddings to the input size at run time.
    ``dinov2_timm``: ``timm.create_model("vit_{small,base,large}_patch14_dinov2", img_size=...)``.
        ``source``: a timm ``state_dict`` file/folder or hub id
        (``timm/vit_small_patch14_dinov2.lvd142m``). timm builds these models at 518 px unless
        ``img_size`` is passed; we pass the contract's resolution and ``convert_timm_dinov2``
        resamples ``pos_embed`` (37x37 -> 16x16 at 224) with timm's ``resample_abs_pos_embed``.

Readout: ``cls`` = final-LayerNorm CLS token (HF ``last_hidden_state[:, 0]``, which is also HF's
``pooler_output``; timm ``forward_features(x)[:, 0]``); ``patches`` = final-LayerNorm patch tokens.

Preprocessing: 224 px (DINOv2's linear-probe resolution), the ``BitImageProcessor`` record
``preprocessor_config.json`` of ``facebook/dinov2-*`` (``size: {shortest_edge: 256}``,
``crop_size: 224 x 224``, ``resample: 3`` = bicubic, ``rescale_factor: 1/255``, ImageNet
mean/std; a local folder's own mean/std win): short side resized to 256, uint8 result, centre
crop 224 with the transformers offset ``(size - 224) // 2``. Frames of *every* size go through
this, including frames already at 224 px (224 -> 256 -> crop 224, as the processor does: a
224-px frame loses its outer 1/16 and is slightly upsampled). ``dinov2_timm`` uses the same
record (the DINOv2 authors' evaluation transform, ``Resize(256)`` + ``CenterCrop(224)``).
Licence: Apache-2.0 (code and weights).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderAdapter, Features, InputContract
from .hf import build_hf_model, preprocessor_stats, rename_keys
from .registry import EncoderConfig, register_encoder
from .timm_vit import TimmViTAdapter, build_timm_vit, resample_pos_embed

__all__ = ["DINOv2HFAdapter", "convert_hf_dinov2", "convert_timm_dinov2", "HF_PRESETS"]

StateDict = dict[str, torch.Tensor]

# Architecture of facebook/dinov2-{small,base,large}/config.json (patch 14, 518 px, MLP ratio 4).
HF_PRESETS = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}
_HF_COMMON = dict(patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0)

_CONTRACT = dict(
    resize="center_crop", crop_pct=0.875, crop_offset="floor", resize_uint8=True, interpolation="bicubic",
    mean=IMAGENET_MEAN, std=IMAGENET_STD,
    licence="Apache-2.0",
    reference="facebook/dinov2-* preprocessor_config.json (BitImageProcessor: shortest_edge 256, crop 224, bicubic, ImageNet mean/std)",
)


def convert_hf_dinov2(state_dict: StateDict) -> StateDict:
    """HF hub/``save_pretrained`` layout of ``Dinov2Model`` -> the installed model's names."""
    sd = rename_keys(
        state_dict,
        [
            ("attention.attention.query", "attention.q_proj"),
            ("attention.attention.key", "attention.k_proj"),
            ("attention.attention.value", "attention.v_proj"),
            ("attention.output.dense", "attention.o_proj"),
            ("mlp.weights_out", "mlp.down_proj"),
        ],
    )
    for key in [k for k in sd if ".mlp.weights_in." in k]:  # SwiGLU (giant): [2F, D] -> gate, up
        gate, up = sd.pop(key).chunk(2, dim=0)
        sd[key.replace("weights_in", "gate_proj")] = gate
        sd[key.replace("weights_in", "up_proj")] = up
    return sd


def convert_timm_dinov2(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm DINOv2 checkpoint (518 px, no classifier) -> model at its ``img_size``: only
    ``pos_embed`` changes (bicubic resampling to the model's grid)."""
    return resample_pos_embed(state_dict, model)


class DINOv2HFAdapter(EncoderAdapter):
    """``transformers.Dinov2Model`` behind the adapter interface."""

    def __init__(self, model: Dinov2Model, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        self.model = model
        self.embed_dim = model.config.hidden_size

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``curr [B, 3, H, W]`` -> cls ``[B, D]``, patches ``[B, N, D]`` (final-LayerNorm tokens)."""
        tokens = self.model(pixel_values=curr).last_hidden_state  # [B, 1 + N, D]
        p = self.model.config.patch_size
        return Features(cls=tokens[:, 0], patches=tokens[:, 1:], grid=(curr.shape[-2] // p, curr.shape[-1] // p))


@register_encoder("dinov2_hf")
def _dinov2_hf(cfg: EncoderConfig) -> DINOv2HFAdapter:
    preset = {**_HF_COMMON, **HF_PRESETS[cfg.arch or "small"]}
    model, directory = build_hf_model(
        Dinov2Model, Dinov2Config, source=cfg.source, preset=preset, overrides=cfg.model_kwargs,
        convert=convert_hf_dinov2, encoder=cfg.name,
    )
    size = cfg.img_size or 224
    stats = preprocessor_stats(directory) if directory else {}
    contract = InputContract(
        **{**_CONTRACT, **{k[len("image_"):]: v for k, v in stats.items()}},
        source=cfg.source or f"random init (Dinov2Model {cfg.arch or 'small'})",
        resolution=(size, size),
        frames_needed=1,
    )
    return DINOv2HFAdapter(model, contract, cfg.frames, cfg.autocast_bf16)


@register_encoder("dinov2_timm")
def _dinov2_timm(cfg: EncoderConfig) -> TimmViTAdapter:
    return build_timm_vit(
        cfg,
        default_arch={s: f"vit_{s}_patch14_dinov2" for s in ("small", "base", "large")},
        native_size=224,
        convert=convert_timm_dinov2,
        contract_kw=_CONTRACT,
        source_desc="random init (timm DINOv2 ViT)",
    )
