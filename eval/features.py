"""Frozen features of frame pairs: batched encoding through readouts, and the precomputed-feature file.

Readouts are those of ``avbr.adapters.readouts`` (``cls``, ``mean``, ``pixelwise``, ``agg_a`` ..
``agg_d``: seed 002's aggregation ablation (A) avg + late, (B) avg + early, (C) pixel-wise,
(D) all patches + late). Token readouts (``[B, T, D]``) are flattened to ``[B, T*D]`` for the
linear/MLP probes. The learned layers of ``agg_b`` (and of ``agg_c`` on encoders without their own
pixel-wise fusion) are initialised with a fixed seed and frozen: the probes measure what a fixed
readout of the frozen encoder exposes. The extra name ``tokens`` returns the raw patch tokens
``[B, N, D]`` (dense probes such as optical flow).

The precomputed-feature file (``features=path.npz`` in the probe apps) is an ``.npz`` with
``pair [M, F]`` (features of ``(o_t, o_{t+k})``), optionally ``single [M, F']`` (features of
``o_t`` alone), ``action [M, A]``, ``episode [M]`` (str) and optionally ``task [M]``.

Letters: ``B`` batch, ``M`` samples, ``N`` patch tokens, ``D`` width, ``F`` feature width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["TOKENS", "encode_readouts", "readout_applies", "save_feature_file", "load_feature_file", "FEATURE_KEYS"]

FEATURE_KEYS = ("pair", "single", "action", "episode", "task")
TOKENS = "tokens"


def _build(name: str, example):
    from avbr.adapters.readouts import build_readout  # noqa: PLC0415 - imports every encoder family

    torch.manual_seed(0)  # fixed init of learned readout layers (agg_b, agg_c), identical in every run
    return build_readout(name, example).to(example.cls.device).eval()


def readout_applies(name: str, example) -> str | None:
    """None when readout ``name`` can read features like ``example``, else the reason it cannot."""
    if name == TOKENS:
        return None
    try:
        _build(name, example)
    except ValueError as e:
        return str(e)
    return None


@torch.inference_mode()
def encode_readouts(
    adapter, prev: np.ndarray | None, curr: np.ndarray, readouts: Sequence[str], batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """Encode frames in batches and keep only the requested readouts.

    Args:
        adapter: an ``avbr.adapters.EncoderAdapter``.
        prev: ``uint8 [M, H, W, 3]`` previous frames, or None (one frame: still input).
        curr: ``uint8 [M, H, W, 3]`` current frames.
        readouts: ``avbr.adapters.readouts`` names, or ``tokens`` for the raw patch tokens.
        batch_size: frames per forward pass.

    Returns:
        ``{readout: float32 array}``: ``[M, F]`` (token readouts flattened), ``[M, N, D]`` for
        ``tokens``.
    """
    out: dict[str, list[np.ndarray]] = {r: [] for r in readouts}
    fns: dict = {}
    for i in range(0, len(curr), batch_size):
        f = adapter.encode(None if prev is None else prev[i : i + batch_size], curr[i : i + batch_size])
        if not fns:
            fns = {r: (lambda g: g.patches) if r == TOKENS else _build(r, f) for r in readouts}
        for r, fn in fns.items():
            x = fn(f).float().cpu()
            if r != TOKENS and x.ndim == 3:
                x = x.flatten(1)  # [B, T, D] -> [B, T*D]
            out[r].append(x.numpy())
    return {r: np.concatenate(v) for r, v in out.items()}


def save_feature_file(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write a precomputed-feature ``.npz`` (keys of ``FEATURE_KEYS``; see the module docstring)."""
    unknown = set(arrays) - set(FEATURE_KEYS)
    if unknown:
        raise ValueError(f"unknown feature-file keys {sorted(unknown)}; valid: {FEATURE_KEYS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in arrays.items()})
    return path


def load_feature_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a precomputed-feature ``.npz``.

    Raises:
        FileNotFoundError / ValueError: naming the file and the missing key or bad shape.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature file {path} does not exist; write one with avbr.eval.features.save_feature_file")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("pair", "action", "episode"):
        if key not in data:
            raise ValueError(f"feature file {path} has no {key!r} array (keys: {sorted(data)}); see avbr.eval.features")
    m = len(data["action"])
    for key, v in data.items():
        if len(v) != m:
            raise ValueError(f"feature file {path}: {key!r} has {len(v)} rows, 'action' has {m}")
    if data["pair"].ndim != 2 or data["action"].ndim != 2:
        raise ValueError(f"feature file {path}: 'pair' must be [M, F] and 'action' [M, A]")
    return data
