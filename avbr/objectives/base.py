"""The objective interface and registry.

An objective owns the trainable model(s) of one pretraining method and turns a batch of frame
pairs into a loss. The training loop only sees this interface:

- ``frames_per_sample``: 2 when the objective trains on pairs ``(t, t + k)``, 3 when it needs
  triples ``(t, t + k, t + 2k)`` (the loop builds the data mixture with it);
- ``forward(prev, curr, gap, is_still, generator, future) -> dict`` with ``"loss"`` (scalar, the
  one to back-propagate) and detached scalar metrics (tensors; the loop reads them only at log
  time, so the step has no host synchronisation);
- ``after_step(step, total_steps)``: work after each optimiser step (the EMA teacher of DINO);
- ``encoder``: the module exported at the end, ``export_encoder(directory)`` writes it.

Objectives draw all their randomness (masks, crops) from the ``generator`` the loop passes in,
seeded from ``(seed, step, rank)``, so a resumed run repeats the draws of an uninterrupted one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from avbr.data.gaps import GapSchedule
from avbr.models.registry import make_config
from avbr.registry import Registry

__all__ = ["Objective", "ObjectiveSpec", "OBJECTIVES", "build_objective", "frames_to_float", "masked_mean"]

OBJECTIVES: Registry[type["Objective"]] = Registry("objective")


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` -> ``float32 [B, 3, H, W]`` in ``[0, 1]`` (contiguous NCHW)."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [B, H, W, 3] frames, got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).float().div_(255.0).contiguous()  # [B, 3, H, W]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B]`` over ``mask [B]`` (0 when the mask is empty), without a host sync."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class ObjectiveSpec:
    """What :func:`build_objective` hands every objective besides its own options; each objective
    documents which fields it uses.

    Attributes:
        encoder: encoder registry name of ``avbr.models``.
        encoder_kwargs: encoder config fields (``preset``, ``img_size``, ...).
        decoder_kwargs: decoder config fields.
        gap: the gap schedule (its weights).
    """

    encoder: str = "two_stream"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)
    gap: GapSchedule = field(default_factory=GapSchedule)


class Objective(nn.Module):
    """Base class of the pretraining objectives.

    Subclasses set ``name`` and a ``Config`` dataclass of their own options (documented fields),
    and are built as ``cls(spec: ObjectiveSpec, cfg: Config)``.
    Every step must run the same graph (the loop wraps the objective in DDP with ``static_graph``).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    img_size: int
    frames_per_sample: int = 2

    @property
    def encoder(self) -> nn.Module:
        """The encoder that pretraining exports."""
        raise NotImplementedError

    def forward(
        self,
        prev: torch.Tensor,
        curr: torch.Tensor,
        gap: torch.Tensor,
        is_still: torch.Tensor,
        generator: torch.Generator | None = None,
        future: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss of a batch.

        Args:
            prev: ``[B, 3, H, W]`` float frames ``t`` in ``[0, 1]`` (stills: equal to ``curr``).
            curr: ``[B, 3, H, W]`` float frames ``t + k``.
            gap: ``int64 [B]``, ``k`` (0 for stills).
            is_still: ``bool [B]``.
            generator: source of the objective's random draws (on the batch's device).
            future: ``[B, 3, H, W]`` float frames ``t + 2k`` when ``frames_per_sample == 3``
                (stills: equal to ``curr``), else ``None``.

        Returns:
            ``{"loss": scalar, <metric>: scalar, ...}``; metrics are detached.
        """
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Called after optimiser step ``step`` (0-based); default: nothing."""

    def export_encoder(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write the encoder-only checkpoint to ``directory``."""
        from avbr.models import save_encoder

        return save_encoder(self.encoder, directory, extra=extra)


def build_objective(
    name: str,
    encoder: str = "two_stream",
    encoder_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
    gap: GapSchedule | None = None,
    params: Mapping[str, Any] | None = None,
) -> Objective:
    """Build the registered objective ``name``.

    Args:
        name: ``future_prediction`` | ``videomae`` | ``dino_temporal`` (see ``OBJECTIVES``).
        encoder: encoder registry name of ``avbr.models`` (ignored by ``videomae``).
        encoder_kwargs: encoder config fields (``preset``, ``img_size``, ...).
        decoder_kwargs: decoder config fields (future prediction: ``DecoderConfig``; VideoMAE:
            ``decoder_*`` fields of transformers' ``VideoMAEConfig``).
        gap: gap schedule (future prediction weights; the data sampler uses the same one).
        params: the objective's own options (fields of its ``Config``); a wrong key lists the valid ones.
    """
    cls = OBJECTIVES.get(name)
    cfg = make_config(cls.Config, dict(params or {}), f"{name} objective")
    spec = ObjectiveSpec(encoder, dict(encoder_kwargs or {}), dict(decoder_kwargs or {}), gap or GapSchedule())
    return cls(spec, cfg)


@dataclass
class NoOptions:
    """An objective without options of its own."""
