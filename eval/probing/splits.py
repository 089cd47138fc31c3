"""Train/val/test splits by group (trajectory, episode, synthetic sequence), never by frame.

Frames of one trajectory are strongly correlated: a split by frame lets a probe memorise a
trajectory from its neighbours and report inflated numbers. Every probe of ``avbr.eval`` therefore
splits the *groups* (``episode`` ids of the samples) and then takes all samples of a group into
the same part. :func:`check_no_leakage` is the guard the probes call on every split they use.

Letters: ``M`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from avbr.cli import UserError

__all__ = ["Split", "LeakageError", "split_by_group", "check_no_leakage", "SplitFn"]


class LeakageError(UserError, AssertionError):
    """A group (trajectory) has samples in two parts of a split."""


@dataclass(frozen=True)
class Split:
    """Sample indices of the three parts, each ``int64 [M_part]``, sorted and disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {k: int(len(v)) for k, v in self.parts().items()}


SplitFn = Callable[[Sequence[str], tuple[float, float, float], int], Split]


def split_by_group(
    groups: Sequence[str], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> Split:
    """Shuffle the distinct groups with ``seed`` and cut them into train/val/test.

    Args:
        groups: ``[M]`` group id of every sample (e.g. the trajectory id).
        fractions: shares of the *groups* (not samples) in train, val, test; they must sum to 1.
            Each part gets at least one group, so at least 3 distinct groups are needed.
        seed: shuffling seed; different seeds give different group assignments.

    Returns:
        The :class:`Split` of sample indices.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be 3 positive numbers summing to 1, got {fractions}")
    groups = np.asarray([str(g) for g in groups])
    uniq = np.unique(groups)
    if len(uniq) < 3:
        raise ValueError(
            f"a split by trajectory needs at least 3 distinct trajectories, got {len(uniq)}; "
            "load more episodes (data.max_episodes) or a larger dataset"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    n_train = max(1, int(round(fractions[0] * len(uniq))))
    n_val = max(1, int(round(fractions[1] * len(uniq))))
    n_train = min(n_train, len(uniq) - 2)  # leave one group each for val and test
    n_val = min(n_val, len(uniq) - n_train - 1)
    part_of_group = np.empty(len(uniq), dtype=np.int64)
    part_of_group[order[:n_train]] = 0
    part_of_group[order[n_train : n_train + n_val]] = 1
    part_of_group[order[n_train + n_val :]] = 2
    part = part_of_group[np.searchsorted(uniq, groups)]  # [M] part of each sample
    return Split(*(np.flatnonzero(part == p) for p in range(3)))


def check_no_leakage(groups: Sequence[str], split: Split) -> None:
    """Raise :class:`LeakageError` if any group has samples in two parts (this also catches a
    sample index listed in two parts).

    Args:
        groups: ``[M]`` group id of every sample.
        split: the split to check.
    """
    groups = np.asarray([str(g) for g in groups])
    parts = split.parts()
    seen: dict[str, str] = {}
    for name, idx in parts.items():
        for g in np.unique(groups[idx]):
            if g in seen and seen[g] != name:
                raise LeakageError(
                    f"trajectory {g!r} has samples in both {seen[g]!r} and {name!r}: frames leak across the "
                    "split; split the trajectory ids (avbr.eval.probing.splits.split_by_group), not the frames"
                )
            seen[g] = name
