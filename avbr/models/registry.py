"""One registry that builds every model of the family by name.

``build_model(name, **kwargs)``; the kwargs are the fields of the model's config dataclass
(``TwoStreamConfig`` for ``two_stream``, ``StreamEncoderConfig`` for the single-ViT baselines), and a
wrong key raises with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from torch import nn

from avbr.models.baselines import SingleViTEncoder
from avbr.models.config import StreamEncoderConfig, TwoStreamConfig
from avbr.models.decoder import DecoderConfig, VideoDecoder
from avbr.models.predictor import VideoPredictor
from avbr.models.two_stream import TwoStreamEncoder
from avbr.registry import Registry, UnknownNameError

__all__ = ["MODELS", "ENCODER_NAMES", "build_model", "list_models", "make_config"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def make_config(cls: type, kwargs: Mapping[str, Any], what: str) -> Any:
    """``cls(**kwargs)``, with an error that lists the valid fields when a key is wrong."""
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown}; valid options: {', '.join(fields)}")
    return cls(**kwargs)


@MODELS.register("two_stream")
def two_stream(**kwargs: Any) -> TwoStreamEncoder:
    """M and P ViTs with CLS exchange and fusion (``TwoStreamConfig`` fields)."""
    return TwoStreamEncoder(make_config(TwoStreamConfig, kwargs, "two_stream"))


def _single_vit(kind: str) -> Callable[..., SingleViTEncoder]:
    def build(**kwargs: Any) -> SingleViTEncoder:
        return SingleViTEncoder(kind, make_config(StreamEncoderConfig, kwargs, kind))

    build.__doc__ = f"Single-ViT baseline {kind!r} (``StreamEncoderConfig`` fields)."
    return build


for _kind in ("single_stream", "early_fusion", "m_only", "p_only"):
    MODELS.register(_kind)(_single_vit(_kind))

ENCODER_NAMES = ("two_stream", "single_stream", "early_fusion", "m_only", "p_only")


@MODELS.register("video_predictor")
def video_predictor(
    encoder: str = "two_stream",
    encoder_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
) -> VideoPredictor:
    """Encoder ``encoder`` (one of ``ENCODER_NAMES``) plus a ``VideoDecoder`` sized for it."""
    if encoder not in ENCODER_NAMES:
        raise UnknownNameError(f"unknown encoder {encoder!r} for video_predictor; valid: {', '.join(ENCODER_NAMES)}")
    enc = MODELS.get(encoder)(**dict(encoder_kwargs or {}))
    dec_cfg = make_config(DecoderConfig, dict(decoder_kwargs or {}), "decoder")
    decoder = VideoDecoder(enc.embed_dim, enc.img_size, enc.patch_size, enc.cfg.num_stages, dec_cfg)
    return VideoPredictor(enc, decoder)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` (see ``list_models()``) from its config fields."""
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    return MODELS.names()
