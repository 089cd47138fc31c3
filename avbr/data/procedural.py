"""Procedural moving-shape videos: a smoke-test source that needs no download.

**This is not research data.** It exists so that ``python -m avbr.train`` runs on a fresh machine
and so that tests have a deterministic fixture with known motion. Pretrain on EgoDex, Bridge V2 or
your own videos for anything you want to report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avbr.data.base import SOURCES, EpisodeRef, FramePairSource, PairSample
from avbr.data.gaps import GapSchedule

__all__ = ["ProceduralVideoSource", "ProceduralStillSource"]


class _Scene:
    """One episode: 1..max_shapes discs/squares moving at constant velocity, bouncing off the walls.

    Everything is drawn from ``seed``; frame ``t`` is rendered analytically (no state), so any
    frame of any episode costs one render.
    """

    def __init__(self, seed: int, size: int, max_shapes: int) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.n = int(rng.integers(1, max_shapes + 1))
        self.radius = rng.uniform(0.08, 0.18, self.n) * size  # [n] pixels
        self.pos0 = rng.uniform(0.2, 0.8, (self.n, 2)) * size  # [n, (x, y)] pixels
        self.vel = rng.uniform(-0.04, 0.04, (self.n, 2)) * size  # [n, (x, y)] pixels / frame
        self.square = rng.random(self.n) < 0.5
        self.colour = rng.integers(40, 256, (self.n, 3)).astype(np.uint8)
        self.bg = rng.integers(0, 120, (2, 3)).astype(np.float32)  # top / bottom background colours

    def positions(self, t: int) -> np.ndarray:
        """Shape centres at frame ``t``, ``[n, 2]`` pixels (reflected into the frame)."""
        lo, hi = self.radius[:, None], self.size - self.radius[:, None]
        span = hi - lo
        x = self.pos0 + self.vel * t - lo  # unfold the bounces: a triangle wave of period 2 * span
        x = np.mod(x, 2 * span)
        return lo + np.where(x > span, 2 * span - x, x)

    def velocities(self, t: int) -> np.ndarray:
        """Shape velocities between frames ``t`` and ``t + 1``, ``[n, 2]`` pixels per frame."""
        return self.positions(t + 1) - self.positions(t)

    def render(self, t: int) -> np.ndarray:
        """Frame ``t`` as ``uint8 [size, size, 3]``."""
        s = self.size
        ramp = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]  # [H, 1, 1]
        img = (self.bg[0] * (1 - ramp) + self.bg[1] * ramp).repeat(s, axis=1)  # [H, W, 3]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)  # [H, W] each
        for (cx, cy), r, sq, c in zip(self.positions(t), self.radius, self.square, self.colour):
            if sq:
                mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
            else:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            img[mask] = c
        return img.astype(np.uint8)


@SOURCES.register("procedural")
class ProceduralVideoSource(FramePairSource):
    """Moving coloured shapes with known motion (smoke tests only, not research data).

    Nothing on disk: episode ``i`` is generated from ``seed + i``. ``action`` is the velocity of
    every shape between ``t`` and ``t + 1`` (``float32 [2 * max_shapes]``, (x, y) pixels per frame,
    zero-padded), ``actions`` the same for ``t .. t + k - 1`` (``[k, 2 * max_shapes]``), ``task``
    is ``"shapes"``.

    Args:
        root: ignored (kept so that every source builds the same way).
        gap: gap schedule.
        num_episodes: number of distinct episodes.
        episode_length: frames per episode.
        size: frame side in pixels.
        max_shapes: at most this many shapes per episode.
        seed: base seed of the episodes.
    """

    name = "procedural"

    def __init__(
        self,
        root: str = "",
        gap: GapSchedule | None = None,
        num_episodes: int = 1000,
        episode_length: int = 64,
        size: int = 96,
        max_shapes: int = 3,
        seed: int = 0,
    ) -> None:
        if episode_length < 2:
            raise ValueError(f"episode_length must be >= 2, got {episode_length}")
        self.root = Path("procedural")
        self.gap = gap or GapSchedule()
        self.length = episode_length
        self.size = size
        self.max_shapes = max_shapes
        self.seed = seed
        self.units = [f"procedural/{i:06d}" for i in range(num_episodes)]

    def scene(self, ref: EpisodeRef) -> _Scene:
        return _Scene(self.seed + int(ref.path.rsplit("/", 1)[1]), self.size, self.max_shapes)

    def episode_length(self, ref: EpisodeRef) -> int:
        return self.length

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        scene = self.scene(ref)
        vel = np.zeros((max(k, 1), 2 * self.max_shapes), dtype=np.float32)
        for j in range(max(k, 1)):
            vel[j, : 2 * scene.n] = scene.velocities(t + j).reshape(-1)
        return self._pair(ref, scene.render(t), scene.render(t + k), t, k, task="shapes", action=vel[0], actions=vel)


@SOURCES.register("procedural_stills")
class ProceduralStillSource(ProceduralVideoSource):
    """Still frames of the procedural scenes (the still part of the smoke-test mixture)."""

    name = "procedural_stills"
    is_still = True

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        img = self.scene(ref).render(0)
        return self._pair(ref, img, img, 0, 0, task="shapes")
