"""Paired comparison of two encoders over the same episodes (same task, init state and seed).

Each shared episode gives a pair of outcomes. Only discordant pairs carry information about the
difference: ``b`` (A succeeded, B failed) and ``c`` (A failed, B succeeded).

* McNemar's exact test (McNemar 1947; exact form: under H0 each discordant pair is A-only with
  probability 1/2, so ``b ~ Binomial(b + c, 1/2)``): two-sided p = ``min(1, 2 P(X <= min(b, c)))``,
  the same value as ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``.
* Paired bootstrap 95% interval of the success difference ``(b - c) / n`` (Efron & Tibshirani
  1993, percentile interval): resampling ``n`` pairs with replacement only changes how many fall
  in each of the three kinds (A-only, B-only, same outcome), so each replicate is one multinomial
  draw of ``n`` over the observed proportions, which is exact and needs no ``[B, n]`` index array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (1.0 when none)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def paired_bootstrap_ci(b: int, c: int, n: int, samples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``P(A succeeds) - P(B succeeds)`` over ``n`` pairs.

    Args:
        b: pairs where only A succeeded; c: pairs where only B succeeded; n: all pairs.
        samples: bootstrap replicates; seed: generator seed (the interval is reproducible).
    """
    if not 0 <= b + c <= n or n == 0:
        raise ValueError(f"need n > 0 and 0 <= b + c <= n, got b={b}, c={c}, n={n}")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [b / n, c / n, (n - b - c) / n], size=samples)  # [samples, 3]
    diffs = (draws[:, 0] - draws[:, 1]) / n
    alpha = (1.0 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


@dataclass(frozen=True)
class PairedComparison:
    """A vs B over their shared episodes.

    Attributes:
        pairs: episodes both runs finished (not crashed), matched by ``(seed, task_id, init_index)``.
        a_success, b_success: successes of A and B over those pairs.
        a_only, b_only: discordant pairs (only A / only B succeeded).
        difference: ``(a_success - b_success) / pairs``.
        ci95_low, ci95_high: paired bootstrap 95% interval of ``difference``.
        mcnemar_p: exact McNemar two-sided p-value.
    """

    pairs: int
    a_success: int
    b_success: int
    a_only: int
    b_only: int
    difference: float
    ci95_low: float
    ci95_high: float
    mcnemar_p: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outcomes(episodes: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int, int], bool]:
    return {(e["seed"], e["task_id"], e["init_index"]): bool(e["success"]) for e in episodes if not e.get("crashed")}


def compare_paired(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]],
                   samples: int = 10_000, seed: int = 0) -> PairedComparison:
    """Pair the ``results.json`` episode lists of two runs and compare them.

    Raises:
        ValueError: the runs share no episode.
    """
    oa, ob = _outcomes(a), _outcomes(b)
    keys = sorted(set(oa) & set(ob))
    if not keys:
        raise ValueError("the two runs share no episode (seed, task, init state): nothing to pair")
    a_only = sum(oa[k] and not ob[k] for k in keys)
    b_only = sum(ob[k] and not oa[k] for k in keys)
    n = len(keys)
    low, high = paired_bootstrap_ci(a_only, b_only, n, samples, seed)
    return PairedComparison(pairs=n, a_success=sum(oa[k] for k in keys), b_success=sum(ob[k] for k in keys),
                            a_only=a_only, b_only=b_only, difference=(a_only - b_only) / n,
                            ci95_low=low, ci95_high=high, mcnemar_p=mcnemar_exact(a_only, b_only))
