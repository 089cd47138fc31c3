"""The video + still mixture, its resumable sampler and the batch collation.

``PairMixture`` is a map-style dataset over an *unbounded* stream of global sample indices ``g``:
sample ``g`` is drawn with ``numpy.random.default_rng([seed, g])`` (source by ratio, then the
source's own episode / gap / frame draws), so it depends on nothing but ``(seed, g)``: not on the
number of workers, the rank, or what was read before. ``StreamSampler`` hands rank ``r`` of ``W``
the indices ``start + r, start + r + W, ...``; resuming after ``n`` optimiser steps of per-rank
batch ``b`` restarts at ``start = n * b * W`` and reproduces the uninterrupted stream exactly.

Unreadable files (``CorruptFileError``) are skipped: the file is logged once per process (one
WARNING line naming it), the skip is counted (``n_skipped`` in the sample, summed by the training
loop) and the next draw of the same generator is used, which keeps the stream deterministic.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from avbr.data.base import CorruptFileError, FramePairSource, PairSample, short_side_shape

__all__ = ["PairMixture", "StreamSampler", "collate_pairs", "resize_center_crop"]

log = logging.getLogger(__name__)


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and centre-crop to ``size``.

    ``uint8 [H, W, 3] -> uint8 [size, size, 3]``.
    """
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    nh, nw = short_side_shape(h, w, size)  # PIL returns a copy when the size is already (nh, nw)
    out = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR, reducing_gap=None))
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[top : top + size, left : left + size]


class PairMixture(Dataset):
    """Frame pairs from several sources, mixed by ratio, resized to ``img_size``.

    Source probabilities: videos share ``1 - still_ratio`` and stills share ``still_ratio``, each
    group split by the sources' ``weights``; with no still source (or no video source) the other
    group takes everything.

    Args:
        sources: the sources (built, not yet read).
        weights: relative weight of each source within its group (video or still).
        img_size: output side; frames are resized (shorter side) and centre-cropped.
        still_ratio: fraction of still samples (seed 002: 0.3).
        seed: stream seed.
        max_retries: draws tried for one index before giving up (all files unreadable).
        frames: 2 for pairs ``(t, t + k)``, 3 for triples ``(t, t + k, t + 2k)`` (the objective's
            ``frames_per_sample``); every source gives both (``FramePairSource.sample``).

    ``__getitem__(g)`` returns a ``PairSample`` (see ``avbr.data.base``) with frames
    ``uint8 [img_size, img_size, 3]`` (``future`` too for triples) plus ``index`` (``g``) and
    ``n_skipped`` (files skipped while drawing it).
    """

    def __init__(
        self,
        sources: Sequence[FramePairSource],
        weights: Sequence[float],
        img_size: int,
        still_ratio: float = 0.3,
        seed: int = 0,
        max_retries: int = 64,
        frames: int = 2,
    ) -> None:
        if not sources or len(sources) != len(weights):
            raise ValueError(f"need one weight per source, got {len(sources)} sources and {len(weights)} weights")
        if not 0.0 <= still_ratio <= 1.0:
            raise ValueError(f"still_ratio must be in [0, 1], got {still_ratio}")
        if any(w < 0 for w in weights):
            raise ValueError(f"source weights must be >= 0, got {list(weights)}")
        if frames not in (2, 3):
            raise ValueError(f"frames must be 2 (pairs) or 3 (triples), got {frames}")
        self.frames = frames
        self.sources = list(sources)
        self.img_size = img_size
        self.seed = seed
        self.max_retries = max_retries
        stills = np.array([s.is_still for s in self.sources])
        w = np.asarray(weights, dtype=np.float64)
        probs = np.zeros(len(w))
        groups = [(~stills, 1.0 - still_ratio), (stills, still_ratio)]
        present = [(m, share) for m, share in groups if w[m].sum() > 0]
        if not present:
            raise ValueError("all source weights are zero")
        for mask, share in present:
            probs[mask] = w[mask] / w[mask].sum() * (share if len(present) == 2 else 1.0)
        self.probs = probs
        for source in self.sources:  # video sources scale while decoding (see FramePairSource)
            source.set_decode_short_side(img_size)
        self.skipped = 0
        self.bad_files: set[str] = set()

    def __len__(self) -> int:
        """The stream is unbounded; this is only an upper bound for tools that ask."""
        return 2**62

    def __getitem__(self, g: int) -> PairSample:
        rng = np.random.default_rng([self.seed, int(g)])
        n_skipped = 0
        for _ in range(self.max_retries):
            source = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
            try:
                sample = source.sample(rng, self.frames)
            except CorruptFileError as e:
                n_skipped += 1
                self.skipped += 1
                if e.path not in self.bad_files:
                    self.bad_files.add(e.path)
                    log.warning("skipping unreadable file %s (%s source): %s", e.path, source.name, e.reason)
                continue
            sample["prev"] = resize_center_crop(sample["prev"], self.img_size)
            for key in ("curr", "future")[: self.frames - 1]:
                sample[key] = sample["prev"] if sample["is_still"] else resize_center_crop(sample[key], self.img_size)
            sample["index"] = int(g)
            sample["n_skipped"] = n_skipped
            return sample
        raise RuntimeError(
            f"{self.max_retries} draws in a row hit unreadable files ({len(self.bad_files)} bad files so far, "
            f"e.g. {sorted(self.bad_files)[:3]}); check the sources' roots"
        )

    def source_probabilities(self) -> dict[str, float]:
        """``{source name: probability}`` (summed over sources of the same name)."""
        out: dict[str, float] = {}
        for s, p in zip(self.sources, self.probs):
            out[s.name] = out.get(s.name, 0.0) + float(p)
        return out


class StreamSampler(Sampler[int]):
    """Unbounded sampler of global indices for one rank: ``start + rank + i * world_size``.

    Args:
        start: global index of the first sample of this run (``step * batch_per_rank * world_size``).
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0 .. {world_size - 1}")
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        g = self.start + self.rank
        while True:
            yield g
            g += self.world_size


def collate_pairs(samples: list[PairSample]) -> dict[str, Any]:
    """Stack samples into the training batch.

    Returns ``prev``/``curr`` ``uint8 [B, H, W, 3]`` (and ``future`` for triples), ``gap``
    ``int64 [B]``, ``is_still`` ``bool [B]``, ``n_skipped`` ``int64 [B]``, ``index`` ``int64 [B]``, and
    ``episode``/``task``/``source`` as lists of str. Per-source extras (actions, states) are dropped:
    their shapes differ between sources.
    """
    batch = {
        "prev": torch.from_numpy(np.stack([s["prev"] for s in samples])),
        "curr": torch.from_numpy(np.stack([s["curr"] for s in samples])),
        "gap": torch.tensor([s["gap"] for s in samples], dtype=torch.int64),
        "is_still": torch.tensor([s["is_still"] for s in samples], dtype=torch.bool),
        "n_skipped": torch.tensor([s["n_skipped"] for s in samples], dtype=torch.int64),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
        "episode": [s["episode"] for s in samples],
        "task": [s["task"] for s in samples],
        "source": [s["source"] for s in samples],
    }
    if "future" in samples[0]:
        batch["future"] = torch.from_numpy(np.stack([s["future"] for s in samples]))
    return batch
