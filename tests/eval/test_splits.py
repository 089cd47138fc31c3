"""Split by trajectory: disjoint parts, no trajectory in two parts, and the leakage guard."""

import numpy as np
import pytest

from avbr.adapters.probes import regression_metrics
from avbr.eval.probing.protocol import evaluate_probe
from avbr.eval.probing.splits import LeakageError, Split, check_no_leakage, split_by_group


def _groups(n_traj: int = 12, per: int = 7) -> np.ndarray:
    return np.repeat([f"traj_group0/traj{i}" for i in range(n_traj)], per)


def test_split_is_by_group_and_covers_every_sample():
    groups = _groups()
    split = split_by_group(groups, (0.5, 0.25, 0.25), seed=3)
    all_idx = np.sort(np.concatenate([split.train, split.val, split.test]))
    assert np.array_equal(all_idx, np.arange(len(groups)))
    sets = [set(groups[p]) for p in (split.train, split.val, split.test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert [len(s) for s in sets] == [6, 3, 3]
    check_no_leakage(groups, split)


def test_seeds_give_different_splits_and_each_part_is_nonempty():
    groups = _groups(n_traj=3)
    a = split_by_group(groups, seed=0)
    assert all(len(p) for p in a.parts().values())
    assert any(not np.array_equal(a.test, split_by_group(groups, seed=s).test) for s in range(1, 6))


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3 distinct"):
        split_by_group(_groups(n_traj=2))
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_group(_groups(), (0.5, 0.5, 0.5))


def frame_split(groups, fractions, seed):
    """A leaky split: shuffles frames, so every trajectory lands in all three parts."""
    idx = np.random.default_rng(seed).permutation(len(groups))
    n1, n2 = int(fractions[0] * len(idx)), int((fractions[0] + fractions[1]) * len(idx))
    return Split(np.sort(idx[:n1]), np.sort(idx[n1:n2]), np.sort(idx[n2:]))


def test_leak_check_catches_a_frame_level_split():
    groups = _groups()
    with pytest.raises(LeakageError, match="leak"):
        check_no_leakage(groups, frame_split(groups, (0.6, 0.2, 0.2), 0))


def test_probe_loop_refuses_an_injected_leaky_split():
    groups = _groups()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(len(groups), 5)), rng.normal(size=(len(groups), 2))
    metrics = lambda yt, yh, ytr: regression_metrics(yt, yh)  # noqa: E731
    evaluate_probe("ridge", x, y, groups, [0], metrics)  # the real split passes
    with pytest.raises(LeakageError):
        evaluate_probe("ridge", x, y, groups, [0], metrics, split_fn=frame_split)


def test_an_index_in_two_parts_is_leakage():
    groups = np.array(["a", "b", "c"])
    with pytest.raises(LeakageError, match="'b'"):
        check_no_leakage(groups, Split(np.array([0, 1]), np.array([1]), np.array([2])))
