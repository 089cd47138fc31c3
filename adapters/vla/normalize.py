"""Action / state normalisation for the VLA adapters.

Two modes, as the two source models use them:

* ``q01_q99`` (OpenVLA ``BOUNDS_Q99``): ``x' = clip(2 (x - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)``
  on the dimensions where ``mask`` is true; other dimensions pass through. OpenVLA's LIBERO
  statistics leave the gripper unnormalised (it is already -1/+1), hence the default mask
  ``[True] * 6 + [False]`` for 7-D LIBERO actions.
* ``mean_std`` (lerobot Pi0: ``STATE`` and ``ACTION`` are ``MEAN_STD``): ``x' = (x - mean) / (std + 1e-8)``.

Statistics are computed from the training demos and stored with every checkpoint (``to_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_EPS = 1e-8


@dataclass
class Normalizer:
    """Per-dimension affine normaliser.

    Attributes:
        mode: ``q01_q99`` or ``mean_std``.
        low: q01 (``q01_q99``) or mean (``mean_std``), ``[A]``.
        high: q99 (``q01_q99``) or std (``mean_std``), ``[A]``.
        mask: dimensions to normalise, bool ``[A]``; the others pass through unchanged.
    """

    mode: str
    low: Tensor
    high: Tensor
    mask: Tensor

    @classmethod
    def fit(cls, data: Tensor, mode: str, mask: list[bool] | None = None) -> "Normalizer":
        """Statistics from samples ``[M, A]``; ``mask`` defaults to all dimensions."""
        data = data.double()
        if mode == "q01_q99":
            low, high = torch.quantile(data, 0.01, dim=0), torch.quantile(data, 0.99, dim=0)
        elif mode == "mean_std":
            low, high = data.mean(0), data.std(0)
        else:
            raise ValueError(f"unknown normalisation mode {mode!r}; known: ['mean_std', 'q01_q99']")
        m = torch.ones(data.shape[1], dtype=torch.bool) if mask is None else torch.tensor(mask, dtype=torch.bool)
        if m.numel() != data.shape[1]:
            raise ValueError(f"mask has {m.numel()} entries but the data has {data.shape[1]} dimensions")
        return cls(mode, low.float(), high.float(), m)

    def normalize(self, x: Tensor) -> Tensor:
        """``[..., A]`` raw -> normalised."""
        low, high, mask = (t.to(x.device) for t in (self.low, self.high, self.mask))
        if self.mode == "q01_q99":
            y = (2.0 * (x - low) / (high - low + _EPS) - 1.0).clamp(-1.0, 1.0)
        else:
            y = (x - low) / (high + _EPS)
        return torch.where(mask, y, x)

    def unnormalize(self, y: Tensor) -> Tensor:
        """``[..., A]`` normalised -> raw."""
        low, high, mask = (t.to(y.device) for t in (self.low, self.high, self.mask))
        if self.mode == "q01_q99":
            x = 0.5 * (y + 1.0) * (high - low) + low
        else:
            x = y * (high + _EPS) + low
        return torch.where(mask, x, y)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"mode": self.mode, "low": self.low.tolist(), "high": self.high.tolist(), "mask": self.mask.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        """Inverse of :meth:`to_dict`."""
        return cls(d["mode"], torch.tensor(d["low"]), torch.tensor(d["high"]), torch.tensor(d["mask"], dtype=torch.bool))
