"""Frame-pair sources: the common base class, the sample dict and the source registry.

Every source is a class that knows one on-disk format (documented in its docstring). It is cheap
to build: ``__init__`` only lists files; nothing is opened or decoded until ``read_pair`` or
``sample`` runs, which happens inside DataLoader workers.

A sample is a plain dict (``PairSample``):

- ``prev``: ``uint8 [H, W, 3]`` RGB, upright, frame ``t``. For a still image ``prev`` *is*
  ``curr`` (the same pixels): identical frames give ``M = 0`` exactly, as ``prev=None`` does in
  ``avbr.preprocess``, and stills and videos then share one collated batch.
- ``curr``: ``uint8 [H, W, 3]``, frame ``t + k``.
- ``gap``: ``k`` (int, ``>= 1`` for videos, ``0`` for stills).
- ``is_still``: bool.
- ``t``: index of ``prev`` in its episode (0 for stills).
- ``episode``: str id, ``"<path relative to root>"`` or ``"<path>:<demo>"``.
- ``task``: str (language instruction or folder name; ``""`` when the format has none).
- ``action``: ``float32 [A]``, the action taken at frame ``t`` (sources with actions only).
- ``actions``: ``float32 [k, A]``, the actions from ``t`` to ``t + k - 1`` (sources with actions).
- ``source``: the source's registry name.
- ``future``: ``uint8 [H, W, 3]``, frame ``t + 2k``; only in *triples* (``sample(rng, frames=3)``,
  for objectives whose target is not an input, e.g. future prediction with ``target:
  extrapolate``). Every other field describes the pair ``(t, t + k)`` as above. A still triple is
  the image three times (``M = 0``, gap 0).

A file that cannot be read (corrupt, truncated, empty) raises ``CorruptFileError`` naming it; the
mixture (``avbr.data.mixture``) logs it once, counts it and draws another sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from avbr.cli import UserError
from avbr.data.gaps import GapSchedule
from avbr.registry import Registry

__all__ = [
    "PairSample", "EpisodeRef", "CorruptFileError", "FramePairSource", "SOURCES", "list_files", "short_side_shape",
]

PairSample = dict[str, Any]

SOURCES: Registry[type["FramePairSource"]] = Registry("data source")


class CorruptFileError(UserError, RuntimeError):
    """A file of a source could not be read; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class EpisodeRef:
    """One episode of a source: the file (or folder) and, for multi-episode files, the key inside."""

    path: str
    key: str = ""

    def id(self, root: Path) -> str:
        """Stable id: path relative to the source root, ``:key`` appended when there is one."""
        rel = os.path.relpath(self.path, root)
        return f"{rel}:{self.key}" if self.key else rel


def list_files(root: Path, suffixes: Iterable[str]) -> list[str]:
    """All files under ``root`` (recursive) whose lower-cased suffix is in ``suffixes``, sorted."""
    suffixes = {s.lower() for s in suffixes}
    out = []
    for dirpath, _, names in os.walk(root, followlinks=True):
        out.extend(os.path.join(dirpath, n) for n in names if Path(n).suffix.lower() in suffixes)
    return sorted(out)


def short_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """``(H', W')`` of an ``H x W`` image whose shorter side is scaled to ``size``, aspect kept.

    The one rounding rule shared by :func:`avbr.data.mixture.resize_center_crop` and decode-time
    scaling (:class:`avbr.data.video.VideoReader`), so that a frame decoded at this shape is not
    resized again, only centre-cropped.
    """
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


class FramePairSource:
    """Base class of every frame-pair source.

    Subclasses set ``name`` (the registry name) and ``is_still``, list their units in ``__init__``
    (``self.units``: files or folders, never opened there) and implement ``episodes_in``,
    ``episode_length`` and ``read_pair``. ``read_triple`` has a generic default built from two
    ``read_pair`` calls, so every source gives triples; a source may override it to decode fewer
    frames.

    Sampling (``sample``): a unit uniformly, then an episode of it uniformly, then ``k`` from the gap
    schedule truncated to the episode, then ``t`` uniformly. A pair (``frames=2``) needs
    ``k <= L - 1`` and takes ``t`` in ``0 .. L - 1 - k``; a triple (``frames=3``) needs
    ``2k <= L - 1`` and takes ``t`` in ``0 .. L - 1 - 2k``.

    Decode-time scaling: :class:`~avbr.data.mixture.PairMixture` calls
    :meth:`set_decode_short_side` with its output size; sources that can scale while decoding
    (videos) then return frames whose shorter side is that size (``short_side_shape``), the others
    ignore it. The pair drawn is the same either way.

    Args:
        root: folder holding the data.
        gap: the gap schedule (ignored by still sources).
    """

    name: str = ""
    is_still: bool = False

    def __init__(self, root: str | os.PathLike, gap: GapSchedule | None = None) -> None:
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(
                f"{type(self).__name__}: data folder {self.root} does not exist; "
                f"point the source's `root` at the downloaded data (see its docstring for the layout)"
            )
        self.gap = gap or GapSchedule()
        self.units: list[str] = []
        self.decode_short_side: int | None = None

    def set_decode_short_side(self, size: int | None) -> None:
        """Frames may come back with their shorter side scaled to ``size`` (``None``: stored size)."""
        if size is not None and size < 1:
            raise ValueError(f"decode short side must be >= 1, got {size}")
        self.decode_short_side = size

    def _require_units(self, what: str) -> None:
        if not self.units:
            raise FileNotFoundError(f"{type(self).__name__}: no {what} found under {self.root}")

    # -- format-specific -------------------------------------------------------------------
    def episodes_in(self, unit: str) -> list[EpisodeRef]:
        """Episodes stored in one unit (a file or folder); opens multi-episode files."""
        return [EpisodeRef(unit)]

    def episode_length(self, ref: EpisodeRef) -> int:
        """Number of frames ``L`` of an episode."""
        raise NotImplementedError

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        """Frames ``t`` and ``t + k`` of an episode with its metadata, as a ``PairSample``."""
        raise NotImplementedError

    def read_triple(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        """Frames ``t``, ``t + k`` and ``t + 2k`` as a triple (``PairSample`` plus ``future``).

        Default: ``read_pair(ref, t, k)`` for the pair and its metadata (actions ``t .. t+k-1``),
        then ``read_pair(ref, t + k, k)`` for frame ``t + 2k``. A still source returns its image
        three times.
        """
        sample = self.read_pair(ref, t, k)
        sample["future"] = sample["curr"] if self.is_still else self.read_pair(ref, t + k, k)["curr"]
        return sample

    # -- generic ---------------------------------------------------------------------------
    def episodes(self) -> list[EpisodeRef]:
        """Every episode of the source (opens multi-episode files; for probing, not training)."""
        return [ref for unit in self.units for ref in self.episodes_in(unit)]

    def sample(self, rng: np.random.Generator, frames: int = 2) -> PairSample:
        """Draw one pair (``frames=2``) or triple (``frames=3``) with ``rng`` (see the class
        docstring); raises ``CorruptFileError``, also for an episode too short for ``frames``."""
        if frames not in (2, 3):
            raise ValueError(f"frames must be 2 (pairs) or 3 (triples), got {frames}")
        read = self.read_pair if frames == 2 else self.read_triple
        unit = self.units[int(rng.integers(len(self.units)))]
        refs = self.episodes_in(unit)
        if not refs:
            raise CorruptFileError(unit, "no episodes in file")
        ref = refs[int(rng.integers(len(refs)))]
        if self.is_still:
            return read(ref, 0, 0)
        length = self.episode_length(ref)
        span = frames - 1  # the sample covers frames t .. t + span * k
        if length < span + 1:
            raise CorruptFileError(ref.path, f"episode {ref.key or ref.path} has {length} frame(s), needs {span + 1}")
        k = self.gap.sample(rng, max_gap=(length - 1) // span)
        t = int(rng.integers(length - span * k))
        return read(ref, t, k)

    def _pair(
        self, ref: EpisodeRef, prev: np.ndarray, curr: np.ndarray, t: int, k: int, task: str = "", **extra: Any
    ) -> PairSample:
        """Assemble a ``PairSample``, checking the frames are ``uint8 [H, W, 3]``."""
        for f in (prev, curr):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise CorruptFileError(ref.path, f"expected uint8 [H, W, 3] frames, got {f.dtype} {f.shape}")
        return {
            "prev": np.ascontiguousarray(prev),
            "curr": np.ascontiguousarray(curr),
            "gap": int(k),
            "is_still": self.is_still,
            "t": int(t),
            "episode": ref.id(self.root),
            "task": task,
            "source": self.name,
            **extra,
        }

    def __len__(self) -> int:
        """Number of units (files or folders) found."""
        return len(self.units)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, units={len(self.units)})"
