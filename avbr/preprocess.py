"""Magnocellular (M) and parvocellular (P) channels of a frame pair.

Both functions are batched tensor operations that run on whatever device the frames are on.

Input frames are float ``[B, 3, H, W]`` RGB in ``[0, 1]`` (``uint8`` frames are accepted and divided
by 255). No further normalisation is applied: the channels keep physical units so that a still
image gives exactly ``M = 0`` and a flat region gives exactly zero gradient; the patch embedding
of each stream learns the scale.

M, 4 channels, ``[B, 4, H, W]``:
    ``ΔL, ΔR, ΔG, ΔB = X(curr) - X(prev)``, each in ``[-1, 1]``.
P, 5 channels, ``[B, 5, H, W]``:
    ``∂x L, ∂y L`` as central differences ``(L[x+1] - L[x-1]) / 2`` with replicated borders, each in
    ``[-0.5, 0.5]`` (``x`` grows to the right, ``y`` downwards), then ``R, G, B`` in ``[0, 1]``.

``L`` is luma with the ITU-R BT.601 weights ``0.299 R + 0.587 G + 0.114 B`` (the weights PIL's
``convert("L")`` uses).

Which frame P comes from (``p_frame``): the seeds disagree (seed 002's DINO views take the earlier
frame, its video-prediction sketch the later one). The default is ``"curr"``, the later frame:
downstream, a policy is called with ``(o_{t-k}, o_t)`` and must act on where things are *now*; with
``"prev"`` the current appearance would only be recoverable by adding M, and every decision would
be made on a view ``k`` steps old. For a still image both choices coincide.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["LUMA_WEIGHTS", "luminance", "m_channels", "p_channels", "mp_channels", "to_float_frames"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
M_CHANNELS = 4
P_CHANNELS = 5

PFrame = Literal["curr", "prev"]


def to_float_frames(frames: torch.Tensor) -> torch.Tensor:
    """Check a frame batch and bring it to float in ``[0, 1]``.

    Args:
        frames: ``[B, 3, H, W]``, float in ``[0, 1]`` or ``uint8``.

    Returns:
        ``[B, 3, H, W]`` floating-point tensor (``uint8`` becomes float32 / 255).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"expected frames of shape [B, 3, H, W], got {tuple(frames.shape)}; "
            "convert HWC images with frames.permute(0, 3, 1, 2)"
        )
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    if not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 or floating point, got {frames.dtype}")
    return frames


def luminance(frames: torch.Tensor) -> torch.Tensor:
    """BT.601 luma.

    Args:
        frames: ``[B, 3, H, W]`` RGB in ``[0, 1]``.

    Returns:
        ``[B, 1, H, W]`` in ``[0, 1]``.
    """
    w = torch.tensor(LUMA_WEIGHTS, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames * w).sum(dim=1, keepdim=True)


def _lum_rgb(frames: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, 4, H, W]`` stacked as ``L, R, G, B``."""
    return torch.cat([luminance(frames), frames], dim=1)


def m_channels(prev: torch.Tensor | None, curr: torch.Tensor) -> torch.Tensor:
    """Temporal-change channels ``ΔL, ΔR, ΔG, ΔB = X(curr) - X(prev)``.

    Args:
        prev: ``[B, 3, H, W]`` earlier frame, or ``None`` for a still image.
        curr: ``[B, 3, H, W]`` later frame.

    Returns:
        ``[B, 4, H, W]`` in ``[-1, 1]``; exactly zero when ``prev`` is ``None`` or equals ``curr``.
    """
    curr = to_float_frames(curr)
    if prev is None:
        return curr.new_zeros(curr.shape[0], M_CHANNELS, *curr.shape[2:])
    prev = to_float_frames(prev)
    if prev.shape != curr.shape:
        raise ValueError(f"prev {tuple(prev.shape)} and curr {tuple(curr.shape)} must have the same shape")
    return _lum_rgb(curr) - _lum_rgb(prev)


def p_channels(frame: torch.Tensor) -> torch.Tensor:
    """Spatial-structure and colour channels ``∂x L, ∂y L, R, G, B``.

    Args:
        frame: ``[B, 3, H, W]`` RGB in ``[0, 1]``.

    Returns:
        ``[B, 5, H, W]``; gradients in ``[-0.5, 0.5]``, colour in ``[0, 1]``.
    """
    frame = to_float_frames(frame)
    lum = luminance(frame)  # [B, 1, H, W]
    padded = F.pad(lum, (1, 1, 1, 1), mode="replicate")  # [B, 1, H+2, W+2]
    dx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) / 2
    dy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) / 2
    return torch.cat([dx, dy, frame], dim=1)


def mp_channels(
    prev: torch.Tensor | None, curr: torch.Tensor, p_frame: PFrame = "curr"
) -> tuple[torch.Tensor, torch.Tensor]:
    """M and P channels of a frame pair.

    Args:
        prev: ``[B, 3, H, W]`` earlier frame, or ``None`` for a still image (then ``M = 0`` and P
            comes from ``curr`` whatever ``p_frame`` says).
        curr: ``[B, 3, H, W]`` later frame.
        p_frame: ``"curr"`` (default, see the module docstring) or ``"prev"``.

    Returns:
        ``(m [B, 4, H, W], p [B, 5, H, W])``.
    """
    if p_frame not in ("curr", "prev"):
        raise ValueError(f"p_frame must be 'curr' or 'prev', got {p_frame!r}")
    source = prev if (p_frame == "prev" and prev is not None) else curr
    return m_channels(prev, curr), p_channels(source)
