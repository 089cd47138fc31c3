"""Paired comparison statistics against independent references (scipy, the normal approximation)."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from avbr.eval.reporting.paired import compare_paired, mcnemar_exact, paired_bootstrap_ci


@pytest.mark.parametrize("b, c", [(0, 0), (0, 5), (3, 9), (10, 10), (25, 12), (1, 40), (7, 0)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_known_value():
    # b=2, c=8: P(X<=2 | n=10) = (1+10+45)/1024, two-sided 112/1024.
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024)


def test_paired_bootstrap_interval_matches_normal_approximation():
    # Many pairs: the percentile interval approaches d +- 1.96 se with
    # se = sqrt(((b + c)/n - d^2) / n) (variance of the paired difference of proportions).
    b, c, n = 180, 120, 1000
    d = (b - c) / n
    se = math.sqrt(((b + c) / n - d * d) / n)
    low, high = paired_bootstrap_ci(b, c, n, samples=20_000)
    assert low == pytest.approx(d - 1.96 * se, abs=0.004) and high == pytest.approx(d + 1.96 * se, abs=0.004)
    assert paired_bootstrap_ci(b, c, n, samples=2000, seed=1) == paired_bootstrap_ci(b, c, n, samples=2000, seed=1)
    assert paired_bootstrap_ci(0, 0, 30) == (0.0, 0.0)  # no discordant pair: no difference in any replicate


def test_compare_paired_matches_by_seed_task_and_init_state():
    def eps(outcomes, crashed=()):
        return [{"seed": 0, "task_id": 0, "init_index": i, "episode": i, "success": s, "crashed": i in crashed}
                for i, s in enumerate(outcomes)]

    a = eps([1, 1, 1, 0, 0, 1])
    b = eps([1, 0, 0, 0, 1, 1], crashed=(5,))
    b.append({"seed": 1, "task_id": 0, "init_index": 0, "episode": 0, "success": True})  # A has no seed 1
    c = compare_paired(a, b, samples=2000)
    assert (c.pairs, c.a_success, c.b_success, c.a_only, c.b_only) == (5, 3, 2, 2, 1)
    assert c.difference == pytest.approx(0.2) and c.mcnemar_p == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert c.ci95_low <= 0.2 <= c.ci95_high
    with pytest.raises(ValueError, match="share no episode"):
        compare_paired(a, [{"seed": 9, "task_id": 0, "init_index": 0, "success": True}])
    assert np.isfinite(c.ci95_low)
