"""Frozen features of frame pairs: batched encoding, readouts, and the precomputed-feature file.

Readouts (registry ``READOUTS``) turn a batch of ``avbr.adapters.Features`` into one array:

- ``cls``: ``[B, D]`` the encoder's global embedding;
- ``mean``: ``[B, D]`` mean of the patch tokens;
- ``A`` (avg + late), ``B`` (avg + early), ``C`` (pixel-wise), ``D`` (all patches + late): seed
  002's aggregation ablation through ``avbr.models.fusion.build_aggregation``, for encoders with
  an M and a P stream. ``C`` needs pixel-wise fused patches (``Features.pixelwise_fused``). Token
  readouts (``C``, ``D``) are flattened to ``[B, T*D]`` for the linear/MLP probes. ``B``'s
  ``Linear(4D -> D)`` is the aggregation module's own layer, initialised with a fixed seed and
  frozen (a trained one would come with the encoder's checkpoint);
- ``patches``: ``[B, N, D]`` tokens, for dense probes (flow).

The precomputed-feature file (``features=path.npz`` in the probe apps) is an ``.npz`` with
``pair [M, F]`` (features of ``(o_t, o_{t+k})``), optionally ``single [M, F']`` (features of
``o_t`` alone), ``action [M, A]``, ``episode [M]`` (str) and optionally ``task [M]``.

Letters: ``B`` batch, ``M`` samples, ``N`` patch tokens, ``D`` width, ``F`` feature width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from avbr.models.fusion import build_aggregation
from avbr.models.output import EncoderOutput
from avbr.registry import Registry

__all__ = ["READOUTS", "readout_names", "readout_applies", "encode_readouts", "save_feature_file", "load_feature_file", "FEATURE_KEYS"]

FEATURE_KEYS = ("pair", "single", "action", "episode", "task")

ReadoutFn = Callable[["Features"], torch.Tensor]  # noqa: F821 - avbr.adapters.Features
READOUTS: Registry[ReadoutFn] = Registry("readout")
_AGG_CACHE: dict[tuple[str, int], torch.nn.Module] = {}


def _aggregate(name: str, f) -> torch.Tensor:
    if set(f.stream_cls) != {"m", "p"}:
        raise ValueError(
            f"readout {name!r} (seed 002's aggregation {name}) needs an encoder with M and P streams; "
            f"this one has streams {sorted(f.stream_cls) or 'none'}. Use the 'cls' or 'mean' readout."
        )
    if name == "C" and not f.pixelwise_fused:
        raise ValueError("readout 'C' (pixel-wise) needs pixel-wise fused patches; this encoder has none")
    dim = f.stream_cls["m"].shape[-1]
    if (name, dim) not in _AGG_CACHE:
        torch.manual_seed(0)  # fixed init of B's projection, identical for every run
        _AGG_CACHE[(name, dim)] = build_aggregation(name, dim).eval()
    out = EncoderOutput(cls=f.cls, patches=f.patches, grid=f.grid, stream_cls=f.stream_cls, stream_patches=f.stream_patches)
    with torch.no_grad():
        return _AGG_CACHE[(name, dim)].to(f.cls.device)(out)


READOUTS.register("cls")(lambda f: f.cls)
READOUTS.register("mean")(lambda f: f.patches.mean(dim=1))
READOUTS.register("patches")(lambda f: f.patches)
for _name in "ABCD":
    READOUTS.register(_name)(lambda f, _n=_name: _aggregate(_n, f))


def readout_names() -> list[str]:
    return READOUTS.names()


def readout_applies(name: str, f) -> str | None:
    """None when readout ``name`` applies to features ``f`` (a small batch), else the reason it does not."""
    try:
        READOUTS.get(name)(f)
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
        readouts: names in ``READOUTS``.
        batch_size: frames per forward pass.

    Returns:
        ``{readout: float32 array}``: ``[M, F]`` (token readouts flattened), ``[M, N, D]`` for
        ``patches``.
    """
    out: dict[str, list[np.ndarray]] = {r: [] for r in readouts}
    fns = {r: READOUTS.get(r) for r in readouts}
    for i in range(0, len(curr), batch_size):
        f = adapter.encode(None if prev is None else prev[i : i + batch_size], curr[i : i + batch_size])
        for r, fn in fns.items():
            x = fn(f).float().cpu()
            if r != "patches" and x.ndim == 3:
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
