"""Video decoder for future prediction (seed 000's redesign).

From the fused patch grid of the encoder, predict ``img_{t+k}``:

- ``log2(patch_size)`` upsampling levels, each doubling the resolution (14 -> 28 -> 56 -> 112 ->
  224 for 16-px patches at 224), so the output has the input's size. The last level (no CLS, "detail")
  is a 3x3 convolution to ``3 x 2 x 2`` channels and a pixel shuffle rather than a full block: at
  full resolution the convolutions and norms are memory-bound, and on an H200 a full last block
  took about 30% of the pretraining step for 2% of its FLOPs;
- the CLS of each stage modulates the first levels FiLM-style,
  ``x <- x * (1 + gamma(cls)) + beta(cls)`` per channel: level 1 gets the final CLS (abstract),
  level 2 the stage-2 CLS, level 3 the stage-1 CLS (concrete), level 4 none (seed 000's
  "multi-scale injection"; the seed's sketch is additive only, the scale term is the FiLM
  paper's full form). ``VideoPredictor`` passes the P-stream CLS of stages ``1 .. S-1`` and,
  as the final one, the encoder's fused CLS, so that the CLS fusion is trained;
- a skip from ``img_t``, downsampled to a quarter of the input size (56 x 56 at 224) and merged
  into the feature map of that size.

``inputs`` selects seed 000's decoder-input ablation:
``A`` patches only; ``B`` + img_t skip; ``C`` + img_t skip + the final CLS at every injected level;
``D`` + img_t skip + the intermediate CLS per level (the default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecoderConfig", "VideoDecoder"]

_ABLATIONS = {
    # inputs: (use img_t skip, CLS schedule)
    "A": (False, None),
    "B": (True, None),
    "C": (True, "final"),
    "D": (True, "stages"),
}


@dataclass
class DecoderConfig:
    """Video decoder settings.

    Attributes:
        width: channels after the input projection; halved at every level, floored at ``min_width``.
        min_width: smallest channel count of a level.
        inputs: decoder-input ablation ``A | B | C | D`` (see the module docstring).
    """

    width: int = 256
    min_width: int = 32
    inputs: str = "D"

    def __post_init__(self) -> None:
        if self.inputs not in _ABLATIONS:
            raise ValueError(f"decoder inputs must be one of {list(_ABLATIONS)}, got {self.inputs!r}")


class _UpBlock(nn.Module):
    """``[B, C_in, h, w] -> [B, C_out, 2h, 2w]``: bilinear x2, two 3x3 conv + GroupNorm + GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        groups = math.gcd(8, c_out)
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(upsample2x_bilinear(x))


def _upsample2x_along(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Bilinear x2 along one spatial ``dim`` (half-pixel centres, edges clamped).

    Output ``2i`` is ``0.75 x[i] + 0.25 x[i-1]`` and output ``2i+1`` is ``0.75 x[i] + 0.25 x[i+1]``,
    with ``x[-1] = x[0]`` and ``x[n] = x[n-1]``: the weights of ``F.interpolate(scale_factor=2,
    mode="bilinear", align_corners=False)`` along that axis.
    """
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)  # x[i-1], clamped
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)  # x[i+1], clamped
    even, odd = 0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after
    out = torch.stack([even, odd], dim=dim + 1)  # [..., n, 2, ...]: even/odd interleaved
    return out.flatten(dim, dim + 1)  # [..., 2n, ...]


def upsample2x_bilinear(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w] -> [B, C, 2h, 2w]``, equal to ``F.interpolate(x, scale_factor=2,
    mode="bilinear", align_corners=False)`` (to float rounding) but built from shifted copies.

    Why: under ``torch.compile`` the backward of ``F.interpolate`` becomes an atomic scatter-add,
    which cost 19 ms of a 181 ms two_stream_base step on an H200 (issue "Performance"); slices,
    ``cat`` and ``stack`` have plain gather backwards. Bilinear is separable, so H then W.
    """
    return _upsample2x_along(_upsample2x_along(x, 2), 3)


class FiLM(nn.Module):
    """Per-channel scale and shift of ``[B, C, h, w]`` from a conditioning vector ``[B, D]``.

    Zero-initialised, so that it starts as the identity.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond)[:, :, None, None].chunk(2, dim=1)  # [B, C, 1, 1] each
        return x * (1 + gamma) + beta


class VideoDecoder(nn.Module):
    """Predicts ``img_{t+k}`` ``[B, 3, H, W]`` in ``[0, 1]`` from the encoder's patch grid.

    Args:
        embed_dim: width ``D`` of the encoder's patch tokens and CLS.
        img_size: output resolution ``H = W``.
        patch_size: encoder patch size; must be a power of two (one level per factor 2).
        num_stages: number of stage CLS the encoder provides.
        cfg: ``DecoderConfig``.
    """

    def __init__(self, embed_dim: int, img_size: int, patch_size: int, num_stages: int, cfg: DecoderConfig) -> None:
        super().__init__()
        if patch_size & (patch_size - 1) or patch_size < 4:
            raise ValueError(f"the video decoder needs a power-of-two patch size >= 4, got {patch_size}")
        self.cfg = cfg
        self.img_size = img_size
        self.use_skip, self.cls_schedule = _ABLATIONS[cfg.inputs]
        n_levels = int(math.log2(patch_size))
        widths = [max(cfg.width >> i, cfg.min_width) for i in range(n_levels)]
        self.input_proj = nn.Conv2d(embed_dim, widths[0], 1)
        self.levels = nn.ModuleList(_UpBlock(widths[i], widths[i + 1]) for i in range(n_levels - 1))
        # CLS injection on the first min(num_stages, n_levels - 1) levels; the last level gets none.
        self.n_film = min(num_stages, n_levels - 1) if self.cls_schedule else 0
        self.films = nn.ModuleList(FiLM(embed_dim, widths[i + 1]) for i in range(self.n_film))
        # The img_t skip joins after the level whose output is img_size / 4.
        self.skip_level = n_levels - 3
        if self.use_skip:
            c_skip = widths[self.skip_level + 1]
            self.skip_stem = nn.Sequential(nn.Conv2d(3, c_skip, 3, padding=1), nn.GELU(), nn.Conv2d(c_skip, c_skip, 3, padding=1))
            self.skip_merge = nn.Conv2d(2 * c_skip, c_skip, 1)
        self.head = nn.Sequential(nn.Conv2d(widths[-1], 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(
        self,
        patches: torch.Tensor,
        grid: tuple[int, int],
        img_t: torch.Tensor | None = None,
        stage_cls: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode.

        Args:
            patches: ``[B, N, D]`` fused patch tokens, row-major over ``grid``.
            grid: ``(h, w)`` with ``h * w = N``.
            img_t: ``[B, 3, H, W]`` the earlier frame in ``[0, 1]``; needed by ablations B-D.
            stage_cls: ``[B, D]`` per encoder stage, last = final (the fused CLS from
                ``VideoPredictor``); needed by ablations C-D.

        Returns:
            ``[B, 3, H, W]`` predicted frame in ``[0, 1]``.
        """
        b, n, d = patches.shape
        h, w = grid
        x = patches.transpose(1, 2).reshape(b, d, h, w)  # [B, N, D] -> [B, D, h, w]
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.input_proj(x)
        conds = self._conditions(stage_cls)
        for i, level in enumerate(self.levels):
            x = level(x)
            if i < self.n_film:
                x = self.films[i](x, conds[i])
            if self.use_skip and i == self.skip_level:
                if img_t is None:
                    raise ValueError(f"decoder inputs {self.cfg.inputs!r} need img_t for the skip connection")
                skip = F.interpolate(img_t, size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
                x = self.skip_merge(torch.cat([x, self.skip_stem(skip)], dim=1))
        out = torch.sigmoid(self.head(x))  # [B, 12, H/2, W/2] -> [B, 3, H, W]
        if out.shape[-1] != self.img_size:
            out = F.interpolate(out, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return out

    def _conditions(self, stage_cls: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """CLS vector for each FiLM level: final first (level 1), then earlier stages."""
        if not self.n_film:
            return []
        if not stage_cls:
            raise ValueError(f"decoder inputs {self.cfg.inputs!r} need the encoder's stage CLS tokens")
        if self.cls_schedule == "final":
            return [stage_cls[-1]] * self.n_film
        return [stage_cls[-(i + 1)] for i in range(self.n_film)]
