"""The encoder registry: ``build_encoder(EncoderConfig(name=...))`` for every family.

Registry names are the Hydra options of ``configs/encoder/`` (``encoder=dinov2_hf``). Entries live
in the family modules (``dinov2``, ``clip``, ``siglip``, ``videomae``, ``r3m``, ``timm_vit``,
``ours``), which register themselves when :mod:`avbr.adapters` is imported.

A random-init control of any entry is the same config with ``source: null`` or ``source: random``
(``eval/libero.py`` reads an unset source of our encoders as the newest pretraining export and
insists on ``random`` for random init: :mod:`avbr.eval.rollouts.encoder_source`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from hydra.core.config_store import ConfigStore

from avbr.registry import Registry

from .base import EncoderAdapter

__all__ = ["EncoderConfig", "ENCODERS", "register_encoder", "build_encoder", "list_encoders", "resolve_device"]


@dataclass
class EncoderConfig:
    """Schema of the ``encoder`` config group.

    Attributes:
        name: registry name (``list_encoders()``), e.g. ``"dinov2_hf"``.
        source: hub id or local path of the weights; ``None`` builds the architecture ``arch``
            with random weights (the random-init control). Each entry's module docstring lists
            the accepted layouts.
        arch: architecture preset used for random init (and, for timm entries, always): e.g.
            ``"small"``/``"base"`` or a timm model name. ``""`` = the entry's default.
        img_size: square input resolution in pixels; ``None`` = the encoder's native resolution.
        frames: ``"curr"`` or ``"both"`` (one-frame encoders only: encode prev and curr and
            concatenate, so ``D`` doubles).
        autocast_bf16: run the forward under bfloat16 autocast (features return as float32).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        model_kwargs: overrides of the architecture config (HF config fields, timm kwargs,
            ``avbr.models.build_model`` kwargs); the tests use it for tiny models.
    """

    name: str = "dinov2_hf"
    source: str | None = None
    arch: str = ""
    img_size: int | None = None
    frames: str = "curr"
    autocast_bf16: bool = False
    device: str = "auto"
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames not in ("curr", "both"):
            raise ValueError(f"encoder.frames must be 'curr' or 'both', got {self.frames!r}")
        if self.img_size is not None and self.img_size <= 0:
            raise ValueError(f"encoder.img_size must be positive, got {self.img_size}")
        if self.source == "random":
            self.source = None


# The yaml files of configs/encoder/ start with `defaults: [schema, _self_]`: typed, validated fields.
ConfigStore.instance().store(group="encoder", name="schema", node=EncoderConfig)

ENCODERS: Registry[Callable[[EncoderConfig], EncoderAdapter]] = Registry("encoder")
register_encoder = ENCODERS.register


def list_encoders() -> list[str]:
    """Sorted registry names."""
    return ENCODERS.names()


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else -> ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_encoder(cfg: EncoderConfig | None = None, **overrides: Any) -> EncoderAdapter:
    """Build, load, move to ``cfg.device`` and ``eval()`` the encoder ``cfg.name``.

    ``build_encoder(name="clip", source=None)`` is shorthand for an :class:`EncoderConfig`.
    Raises ``KeyError`` listing the registry names for an unknown ``name``.
    """
    if cfg is None:
        cfg = EncoderConfig(**overrides)
    elif overrides:
        raise TypeError("pass either an EncoderConfig or keyword fields, not both")
    adapter = ENCODERS.get(cfg.name)(cfg)
    adapter.name = cfg.name
    return adapter.to(resolve_device(cfg.device)).eval()
