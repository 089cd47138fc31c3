"""Our encoders (``avbr.models``): two-stream, single-stream, early fusion, M-only, P-only.

Entries ``two_stream``, ``single_stream``, ``early_fusion``, ``m_only``, ``p_only`` (the
``avbr.models`` registry names). ``source``: an encoder-only checkpoint folder written by
``avbr.models.save_encoder`` (``encoder.safetensors`` + ``encoder.json``), loaded with
``avbr.models.load_encoder``, which rebuilds the architecture from ``encoder.json`` and loads
strictly; its registry name must match the entry. ``source: null`` = random init through
``avbr.models.build_model(name, preset=arch or "small", img_size=img_size or 224, **model_kwargs)``,
the control.

Input: the models take float frames in ``[0, 1]`` at their ``img_size`` and compute the M/P
channels themselves (``avbr.preprocess``), so the contract has no mean/std: the short side is
resized to ``img_size`` and the centre cropped (bilinear, antialiased), as the pretraining data
pipeline does (``avbr.data.mixture.resize_center_crop``), then scaled by 1/255. ``prev=None`` is a still image (M = 0).
P-only needs one frame; the others need the pair.

Readout: ``cls``/``patches`` are ``EncoderOutput.cls/patches`` (for two-stream: the CLS fusion and
the pixel-wise fused patch tokens); ``stream_cls/stream_patches`` carry the per-stream M and P
tokens for the aggregation readouts A-D. ``pixelwise_fused`` is set for two-stream (pixel-wise
fusion) and for single-stream / early fusion (M+P or both frames stacked at the input, so every
patch token mixes them from the first layer); not for M-only / P-only. Licence: MIT.
"""

from __future__ import annotations

import torch
from torch import nn

from avbr.models import ENCODER_NAMES, build_model, load_encoder

from .base import EncoderAdapter, Features, InputContract
from .registry import EncoderConfig, register_encoder

__all__ = ["OursAdapter"]

_FUSED = {"two_stream": True, "single_stream": True, "early_fusion": True, "m_only": False, "p_only": False}


class OursAdapter(EncoderAdapter):
    """An ``avbr.models`` encoder behind the adapter interface.

    Args:
        model: the encoder (``forward(prev, curr) -> EncoderOutput``).
        kind: its registry name.
        source: checkpoint folder or None (random init), for the contract record.
        frames, autocast_bf16: see :class:`EncoderAdapter`.
    """

    def __init__(self, model: nn.Module, kind: str, source: str | None, frames: str = "curr", autocast_bf16: bool = False) -> None:
        contract = InputContract(
            source=source or f"random init ({kind}, {model.cfg.preset})",
            resolution=(model.img_size, model.img_size),
            resize="center_crop",
            crop_pct=1.0,
            interpolation="bilinear",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            normalised_inside=True,
            frames_needed=model.frames_needed,
            licence="MIT",
            reference="docs/CONVENTIONS.md (float [0,1] at img_size); avbr.data.mixture.resize_center_crop (pretraining)",
        )
        super().__init__(contract, frames, autocast_bf16)
        self.model = model
        self.kind = kind
        self.embed_dim = model.embed_dim

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``prev, curr [B, 3, H, W]`` in ``[0, 1]`` -> ``EncoderOutput`` as :class:`Features`."""
        out = self.model(prev if self.contract.frames_needed == 2 else None, curr)
        return Features(cls=out.cls, patches=out.patches, grid=tuple(out.grid), stream_cls=dict(out.stream_cls),
                        stream_patches=dict(out.stream_patches), pixelwise_fused=_FUSED[self.kind])


def _builder(kind: str):
    def build(cfg: EncoderConfig) -> OursAdapter:
        if cfg.source is None:
            model = build_model(kind, preset=cfg.arch or "small", img_size=cfg.img_size or 224, **cfg.model_kwargs)
        else:
            model = load_encoder(cfg.source)
            found = getattr(model, "registry_name", None)
            if found != kind:
                raise ValueError(f"{cfg.source} holds a {found!r} encoder, not {kind!r}: use encoder={found}")
            if cfg.img_size not in (None, model.img_size):
                raise ValueError(f"{cfg.source} was trained at {model.img_size} px; drop encoder.img_size={cfg.img_size}")
        return OursAdapter(model.eval(), kind, cfg.source, cfg.frames, cfg.autocast_bf16)

    build.__doc__ = f"Our {kind!r} encoder from an avbr.models.save_encoder folder, or random init."
    return build


for _kind in ENCODER_NAMES:
    register_encoder(_kind)(_builder(_kind))
