"""Optical-flow probe: synthetic sequences with known motion, a dense linear probe from patch
tokens, end-point error (EPE) and error-map plots.

**Ground truth.** :func:`synthetic_sequences` renders short sequences of a textured background
that pans by an integer offset per frame and a few textured rectangles, each moving with its own
integer velocity; the flow of every pixel of ``o_t`` is the displacement of the surface visible
there (top-most rectangle, else the background), so it is exact (no interpolation). Pixels whose
surface leaves the frame keep their true displacement.

**Probe.** Every patch token ``[D]`` (``frames=both`` encoders: prev and curr tokens concatenated)
predicts the mean flow of each of ``s x s`` sub-cells of its patch (``2 s^2`` outputs); the
sub-cell grid is upsampled (nearest) to pixels. Ridge over all tokens of the training pairs, the
penalty selected on val EPE. Reported: test EPE in pixels of the encoder's input frame, with the
zero-flow and mean-flow baselines.

Letters: ``M`` pairs, ``S`` frame side (pixels), ``N = h*w`` patch tokens, ``D`` width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FlowSet", "synthetic_sequences", "cell_targets", "cells_to_pixels", "epe", "plot_flow_errors", "flow_to_rgb"]


@dataclass
class FlowSet:
    """Frame pairs with dense ground-truth flow.

    Attributes:
        prev: ``uint8 [M, S, S, 3]``.
        curr: ``uint8 [M, S, S, 3]``.
        flow: ``float32 [M, S, S, 2]`` displacement ``(dx, dy)`` in pixels of every pixel of ``prev``.
        sequence: ``[M]`` sequence id (str), the split unit.
    """

    prev: np.ndarray
    curr: np.ndarray
    flow: np.ndarray
    sequence: np.ndarray


def _texture(rng: np.random.Generator, h: int, w: int, smooth: int) -> np.ndarray:
    """Smooth random colour texture ``uint8 [h, w, 3]``: coarse noise upsampled, plus fine noise."""
    coarse = rng.uniform(0, 255, size=(h // smooth + 2, w // smooth + 2, 3))
    up = np.kron(coarse, np.ones((smooth, smooth, 1)))[:h, :w]
    fine = rng.normal(0, 20, size=(h, w, 3))
    return np.clip(up + fine, 0, 255).astype(np.uint8)


def synthetic_sequences(
    n_sequences: int, size: int, frames: int = 3, n_objects: int = 3, max_speed: int = 6, seed: int = 0
) -> FlowSet:
    """Consecutive pairs of ``n_sequences`` sequences of ``frames`` frames (``frames - 1`` pairs each).

    Args:
        n_sequences: sequences (split units).
        size: frame side ``S`` in pixels (use the encoder's input resolution).
        frames: frames per sequence.
        n_objects: moving rectangles per sequence.
        max_speed: largest per-frame displacement per axis, pixels (integer velocities).
        seed: RNG seed.
    """
    rng = np.random.default_rng(seed)
    margin = max_speed * frames + 1
    prevs, currs, flows, seqs = [], [], [], []
    for s in range(n_sequences):
        bg = _texture(rng, size + 2 * margin, size + 2 * margin, smooth=int(rng.integers(6, 20)))
        bg_v = rng.integers(-max_speed // 2, max_speed // 2 + 1, size=2)  # (vx, vy)
        objs = []
        for _ in range(n_objects):
            h, w = rng.integers(size // 8, size // 3, size=2)
            objs.append({"tex": _texture(rng, h, w, smooth=int(rng.integers(3, 8))),
                         "pos": rng.integers(0, size - min(h, w), size=2),  # (x, y) of the top-left corner at frame 0
                         "v": rng.integers(-max_speed, max_speed + 1, size=2)})
        rendered = []
        for f in range(frames):
            ox, oy = margin - bg_v[0] * f, margin - bg_v[1] * f  # background crop origin: content moves by +v
            img = bg[oy : oy + size, ox : ox + size].copy()
            flow = np.broadcast_to(bg_v.astype(np.float32), (size, size, 2)).copy()
            for o in objs:
                x0, y0 = o["pos"] + o["v"] * f
                th, tw = o["tex"].shape[:2]
                xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + tw, size), min(y0 + th, size)
                if xa >= xb or ya >= yb:
                    continue
                img[ya:yb, xa:xb] = o["tex"][ya - y0 : yb - y0, xa - x0 : xb - x0]
                flow[ya:yb, xa:xb] = o["v"]
            rendered.append((img, flow))
        for f in range(frames - 1):
            prevs.append(rendered[f][0])
            currs.append(rendered[f + 1][0])
            flows.append(rendered[f][1])  # flow of frame f's pixels to frame f + 1
            seqs.append(f"seq{s}")
    return FlowSet(np.stack(prevs), np.stack(currs), np.stack(flows).astype(np.float32), np.asarray(seqs))


def cell_targets(flow: np.ndarray, grid: tuple[int, int], sub: int) -> np.ndarray:
    """Mean flow per sub-cell of every patch.

    Args:
        flow: ``[M, S, S, 2]``; ``S`` must be divisible by ``grid * sub``.
        grid: patch grid ``(h, w)``.
        sub: sub-cells per patch side.

    Returns:
        ``[M, N, sub*sub*2]`` with ``N = h*w`` (row-major, as the tokens).
    """
    m, hh, ww, _ = flow.shape
    gh, gw = grid[0] * sub, grid[1] * sub
    if hh % gh or ww % gw:
        raise ValueError(f"frame {hh}x{ww} is not divisible into a {gh}x{gw} cell grid; use a frame side that is")
    cells = flow.reshape(m, gh, hh // gh, gw, ww // gw, 2).mean(axis=(2, 4))  # [M, gh, gw, 2]
    cells = cells.reshape(m, grid[0], sub, grid[1], sub, 2).transpose(0, 1, 3, 2, 4, 5)  # [M, h, w, sub, sub, 2]
    return cells.reshape(m, grid[0] * grid[1], sub * sub * 2)


def cells_to_pixels(pred: np.ndarray, grid: tuple[int, int], sub: int, size: int) -> np.ndarray:
    """Inverse layout of :func:`cell_targets`, upsampled (nearest): ``[M, N, sub*sub*2] -> [M, S, S, 2]``."""
    m = len(pred)
    cells = pred.reshape(m, grid[0], grid[1], sub, sub, 2).transpose(0, 1, 3, 2, 4, 5)  # [M, h, sub, w, sub, 2]
    cells = cells.reshape(m, grid[0] * sub, grid[1] * sub, 2)
    rep = size // (grid[0] * sub)
    return np.repeat(np.repeat(cells, rep, axis=1), rep, axis=2)


def epe(pred: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error ``||pred - flow||_2``: ``[M, S, S, 2] x 2 -> [M, S, S]``."""
    return np.linalg.norm(pred - flow, axis=-1)


def flow_to_rgb(flow: np.ndarray, max_mag: float) -> np.ndarray:
    """Colour-code ``[S, S, 2]`` flow (hue = direction, value = magnitude / ``max_mag``) to ``[S, S, 3]`` floats."""
    import matplotlib.colors as mcolors  # noqa: PLC0415

    ang = (np.arctan2(flow[..., 1], flow[..., 0]) + np.pi) / (2 * np.pi)
    mag = np.clip(np.linalg.norm(flow, axis=-1) / max(max_mag, 1e-6), 0, 1)
    return mcolors.hsv_to_rgb(np.stack([ang, np.ones_like(ang), mag], axis=-1))


def plot_flow_errors(path: str | Path, prev: np.ndarray, curr: np.ndarray, flow: np.ndarray, pred: np.ndarray,
                     title: str) -> Path:
    """One row per pair: prev, curr, true flow, predicted flow, EPE map (pixels). Arrays ``[K, S, S, ...]``."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    k = len(prev)
    max_mag = float(np.linalg.norm(flow, axis=-1).max())
    err = epe(pred, flow)
    fig, axes = plt.subplots(k, 5, figsize=(12, 2.5 * k), squeeze=False)
    for i in range(k):
        panels = [(prev[i], "o_t"), (curr[i], "o_t+1"), (flow_to_rgb(flow[i], max_mag), "true flow"),
                  (flow_to_rgb(pred[i], max_mag), "probe flow")]
        for j, (img, name) in enumerate(panels):
            axes[i, j].imshow(img)
            axes[i, j].set_title(name, fontsize=8)
        im = axes[i, 4].imshow(err[i], cmap="magma", vmin=0, vmax=max_mag)
        axes[i, 4].set_title(f"EPE (mean {err[i].mean():.2f} px)", fontsize=8)
        fig.colorbar(im, ax=axes[i, 4], fraction=0.046)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
