"""Gap distribution and weights: the formulas of avbr.data.gaps."""

from __future__ import annotations

import numpy as np
import pytest

from avbr.data import GapSchedule


def test_probabilities_follow_sample_decay() -> None:
    g = GapSchedule(max_gap=10, sample_decay=0.8, loss_decay=0.5)
    p = g.probs()
    assert p.shape == (10,) and p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p[1:] / p[:-1], 0.8)
    counts = np.bincount([g.sample(np.random.default_rng(i)) for i in range(4000)], minlength=11)[1:]
    np.testing.assert_allclose(counts / 4000, p, atol=0.03)


def test_weights_decay_and_have_unit_mean() -> None:
    g = GapSchedule(max_gap=10, sample_decay=0.8, loss_decay=0.5, still_weight=0.7)
    w = g.weight_table().double().numpy()
    assert w[0] == pytest.approx(0.7)
    np.testing.assert_allclose(w[2:] / w[1:-1], 0.5)
    assert float((g.probs() * w[1:]).sum()) == pytest.approx(1.0)


def test_short_episodes_truncate_the_gaps() -> None:
    g = GapSchedule(max_gap=10)
    assert {g.sample(np.random.default_rng(i), max_gap=2) for i in range(200)} == {1, 2}
    with pytest.raises(ValueError, match="at least 2 frames"):
        g.probs(max_gap=0)


@pytest.mark.parametrize("kwargs", [{"max_gap": 0}, {"sample_decay": 0.0}, {"loss_decay": 1.5}])
def test_invalid_settings_raise(kwargs) -> None:
    with pytest.raises(ValueError):
        GapSchedule(**kwargs)
