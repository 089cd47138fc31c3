"""The frame-gap distribution of future prediction and its loss weights.

For a video pair ``(img_t, img_{t+k})`` the gap ``k`` is drawn from ``1 .. K`` (``K = max_gap``) with

    P(k) = s^(k-1) / sum_{j=1..K} s^(j-1)                    (s = sample_decay)

and the per-sample loss is multiplied by

    w(k) = l^(k-1) / Z,   Z = sum_{j=1..K} P(j) l^(j-1)      (l = loss_decay)

so that short gaps are both sampled and weighted more, and the normaliser ``Z`` makes the expected
weight of a video sample exactly 1 (``E_P[w(k)] = 1``): changing ``loss_decay`` re-balances the
gaps without changing the overall loss scale or the effective learning rate.

When an episode is shorter than ``K + 1`` frames the distribution is truncated to the gaps that fit
(``k <= L - 1``) and renormalised; the weights keep the global ``Z`` so that a given ``k`` always
weighs the same. Seed 001 uses ``K = 10, s = 0.8, l = 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GapSchedule"]


@dataclass(frozen=True)
class GapSchedule:
    """Gap sampling and weighting.

    Args:
        max_gap: largest gap ``K`` in frames (>= 1).
        sample_decay: ``s`` in ``P(k) ~ s^(k-1)``, in ``(0, 1]`` (1 = uniform).
        loss_decay: ``l`` in ``w(k) ~ l^(k-1)``, in ``(0, 1]`` (1 = unweighted).
        still_weight: loss weight of a still-image sample (gap 0), default 1 (= the mean video weight).
    """

    max_gap: int = 10
    sample_decay: float = 0.8
    loss_decay: float = 0.5
    still_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.max_gap < 1:
            raise ValueError(f"max_gap must be >= 1, got {self.max_gap}")
        for name in ("sample_decay", "loss_decay"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if self.still_weight < 0:
            raise ValueError(f"still_weight must be >= 0, got {self.still_weight}")

    def probs(self, max_gap: int | None = None) -> np.ndarray:
        """``P(k)`` for ``k = 1 .. min(K, max_gap)`` as a float64 array ``[K']`` summing to 1."""
        kmax = self.max_gap if max_gap is None else min(self.max_gap, max_gap)
        if kmax < 1:
            raise ValueError(f"no gap fits: an episode needs at least 2 frames (max_gap={max_gap})")
        p = self.sample_decay ** np.arange(kmax, dtype=np.float64)
        return p / p.sum()

    def sample(self, rng: np.random.Generator, max_gap: int | None = None) -> int:
        """Draw ``k`` in ``1 .. min(K, max_gap)`` from ``P(k)``."""
        p = self.probs(max_gap)
        return int(rng.choice(len(p), p=p)) + 1

    def normaliser(self) -> float:
        """``Z = sum_k P(k) l^(k-1)`` over the full range ``1 .. K``."""
        p = self.probs()
        return float((p * self.loss_decay ** np.arange(self.max_gap, dtype=np.float64)).sum())

    def weight_table(self) -> torch.Tensor:
        """``[K + 1]`` float32 table: entry 0 is ``still_weight``, entry ``k`` is ``w(k)``."""
        w = self.loss_decay ** np.arange(self.max_gap, dtype=np.float64) / self.normaliser()
        return torch.tensor(np.concatenate([[self.still_weight], w]), dtype=torch.float32)
