"""avbr.adapters: every encoder behind one interface, plus readouts, probes and a feature cache.

    from avbr.adapters import build_encoder, EncoderConfig
    enc = build_encoder(EncoderConfig(name="dinov2_hf", source="facebook/dinov2-small"))
    feats = enc.encode(prev_uint8, curr_uint8)      # Features(cls [B,D], patches [B,N,D], grid)

See ``registry.py`` for the config schema and each family module for its input contract.
Importing this package registers every encoder family.
"""

from . import clip, dinov2, ours, r3m, siglip, timm_vit, videomae  # noqa: F401  (register the entries)
from .base import Features, InputContract, EncoderAdapter, StrictLoadError, state_dict_hash
from .hub import WeightsNotFoundError
from .registry import EncoderConfig, build_encoder, list_encoders

__all__ = [
    "Features", "InputContract", "EncoderAdapter", "StrictLoadError", "WeightsNotFoundError", "state_dict_hash",
    "EncoderConfig", "build_encoder", "list_encoders",
]
