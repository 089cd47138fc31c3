"""timm Vision Transformers: the generic adapter, and the supervised ViT reference entry.

Entry ``timm_vit``: ``timm.create_model(arch, num_classes=0, img_size=...)`` (default
``vit_small_patch16_224.augreg_in21k_ft_in1k``'s architecture). ``source``: a timm ``state_dict``
file (``.safetensors``, or ``.pth``/``.bin`` read with ``torch.load(weights_only=True)``), a folder
with ``model.safetensors`` (else ``pytorch_model.bin``), or a hub id
(``timm/vit_small_patch16_224.augreg_in21k_ft_in1k``). ``convert_timm_vit`` drops the ImageNet
classifier (``head.weight``, ``head.bias``) by name and resamples ``pos_embed`` to the model's
grid with ``timm.layers.resample_abs_pos_embed`` (what timm's own ``checkpoint_filter_fn`` does).

Readout: ``cls`` is the final-norm CLS token (``forward_features(x)[:, 0]``), ``patches`` the
final-norm patch tokens (prefix tokens removed).

Preprocessing (timm ``default_cfgs`` of the augreg weights, ``timm/models/vision_transformer.py``):
224 px, bicubic, ``crop_pct=0.9``, mean = std = 0.5, applied with the arithmetic of timm's
``resolve_data_config`` + ``create_transform`` eval pipeline (``transforms_imagenet_eval``): short
side resized to ``floor(224 / 0.9) = 248`` (also for frames already at 224), PIL-style uint8
result, torchvision ``CenterCrop(224)`` (offset rounded half to even). Licence: Apache-2.0.
"""

from __future__ import annotations

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from .base import EncoderAdapter, Features, InputContract, load_strict
from .hub import read_state_dict, resolve_hf_file
from .registry import EncoderConfig, register_encoder

__all__ = ["TimmViTAdapter", "convert_timm_vit", "build_timm_vit"]

StateDict = dict[str, torch.Tensor]


def resample_pos_embed(state_dict: StateDict, model: nn.Module) -> StateDict:
    """Bicubic resampling of ``pos_embed`` to the model's patch grid when the sizes differ."""
    pos = state_dict.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        state_dict = dict(state_dict)
        state_dict["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=prefix
        )
    return state_dict


def convert_timm_vit(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm ImageNet ViT checkpoint -> backbone without classifier: drop ``head.weight`` and
    ``head.bias``, resample ``pos_embed``."""
    sd = {k: v for k, v in state_dict.items() if k not in ("head.weight", "head.bias")}
    return resample_pos_embed(sd, model)


class TimmViTAdapter(EncoderAdapter):
    """A timm ``VisionTransformer`` behind the adapter interface.

    Args:
        model: a timm ViT with ``num_classes=0``.
        contract: its input record.
        frames, autocast_bf16: see :class:`EncoderAdapter`.
    """

    def __init__(self, model: nn.Module, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        self.model = model
        self.embed_dim = model.embed_dim

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``curr [B, 3, H, W]`` -> cls ``[B, D]``, patches ``[B, N, D]`` (final-norm tokens)."""
        tokens = self.model.forward_features(curr)  # [B, prefix + N, D]
        ph, pw = self.model.patch_embed.patch_size
        grid = (curr.shape[-2] // ph, curr.shape[-1] // pw)
        return Features(cls=tokens[:, 0], patches=tokens[:, self.model.num_prefix_tokens :], grid=grid)


def build_timm_vit(
    cfg: EncoderConfig,
    *,
    default_arch: dict[str, str],
    native_size: int,
    convert,
    contract_kw: dict,
    source_desc: str,
) -> TimmViTAdapter:
    """Create the timm model ``arch`` at ``img_size`` and load ``cfg.source`` strictly through
    ``convert(state_dict, model)`` (random init when ``cfg.source`` is None).

    ``default_arch`` maps presets (``"small"``...) to timm names; any other ``arch`` is used as a
    timm model name as is.
    """
    arch = default_arch.get(cfg.arch or "small", cfg.arch)
    size = cfg.img_size or native_size
    model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=size, **cfg.model_kwargs)
    if cfg.source is not None:
        path = resolve_hf_file(cfg.source, ("model.safetensors", "pytorch_model.bin"), cfg.name)
        load_strict(model, convert(read_state_dict(path), model), source=str(cfg.source))
    contract = InputContract(
        source=source_desc if cfg.source is None else f"{cfg.source} ({arch})",
        resolution=(size, size),
        frames_needed=1,
        **contract_kw,
    )
    return TimmViTAdapter(model.eval(), contract, cfg.frames, cfg.autocast_bf16)


@register_encoder("timm_vit")
def _timm_vit(cfg: EncoderConfig) -> TimmViTAdapter:
    return build_timm_vit(
        cfg,
        default_arch={"small": "vit_small_patch16_224", "base": "vit_base_patch16_224"},
        native_size=224,
        convert=convert_timm_vit,
        contract_kw=dict(
            resize="center_crop", crop_pct=0.9, crop_offset="round", resize_uint8=True, interpolation="bicubic",
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            licence="Apache-2.0",
            reference="timm default_cfgs for vit_*_patch16_224.augreg_in21k_ft_in1k (timm/models/vision_transformer.py)",
        ),
        source_desc="random init (timm ViT)",
    )
