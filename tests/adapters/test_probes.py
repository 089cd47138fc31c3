"""Probes: ridge recovers a planted map, CV picks a sensible penalty, metrics are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbr.adapters.probes import build_probe, gripper_accuracy, kfold_indices, r2_per_dim


def planted(n: int, d: int, k: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, size=d) + rng.normal(size=d)  # unstandardised
    W = rng.normal(size=(d, k))
    Y = X @ W + 3.0 + noise * rng.normal(size=(n, k))
    return X.astype(np.float32), Y.astype(np.float32), W


@pytest.mark.parametrize("n, d", [(400, 32), (60, 200)])  # primal (n > D) and dual (n < D) solves
def test_ridge_recovers_planted_map(n: int, d: int) -> None:
    Xa, Ya, _ = planted(n + 200, d, 4, noise=0.0)
    X, Y, Xt, Yt = Xa[:n], Ya[:n], Xa[n:], Ya[n:]
    probe = build_probe("ridge", device="cpu").fit(X, Y)
    m = probe.evaluate(X, Y)
    assert min(m["r2_per_dim"]) > 0.999, m
    if n > d:  # a full-rank planted map generalises exactly
        assert probe.lam <= 1e-3
        assert min(probe.evaluate(Xt, Yt)["r2_per_dim"]) > 0.999


def test_ridge_cv_regularises_noise() -> None:
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(80, 60)), rng.normal(size=(80, 2))  # pure noise: best is a strong penalty
    probe = build_probe("ridge", device="cpu").fit(X, Y, groups=np.arange(80) // 8)
    assert probe.lam >= 1.0


@pytest.mark.parametrize("groups", [np.repeat(np.arange(10), 7), np.repeat([f"ep{i}" for i in range(10)], 7)])
def test_group_folds_keep_groups_together(groups: np.ndarray) -> None:
    for val in kfold_indices(len(groups), 5, groups):
        assert set(groups[val]).isdisjoint(set(np.delete(groups, val)))


@pytest.mark.parametrize("name, shape", [("mlp", (256, 6)), ("attentive", (256, 5, 6))])
def test_trained_probes_fit_a_simple_map(name: str, shape: tuple) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=shape).astype(np.float32)
    flat = X if X.ndim == 2 else X.mean(1)
    Y = np.stack([flat[:, 0] - flat[:, 1], 0.5 * flat[:, 2]], 1)
    probe = build_probe(name, epochs=300, hidden=64, num_heads=2, batch_size=256, lr=1e-2, device="cpu").fit(X, Y)
    assert probe.evaluate(X, Y)["r2_mean"] > 0.99


def test_metrics() -> None:
    t = torch.tensor([[1.0, -1.0], [2.0, 1.0], [3.0, 1.0]])
    p = torch.tensor([[1.0, -0.2], [2.0, 0.5], [3.0, -0.1]])
    assert torch.allclose(r2_per_dim(p, t)[0], torch.tensor(1.0))
    assert gripper_accuracy(p, t) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="X \\[n, D\\]"):
        build_probe("ridge", device="cpu").fit(np.zeros((4, 2, 3)), np.zeros((4, 1)))


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 1.0)])  # LIBERO gripper -1/+1, Bridge 0/1
def test_gripper_threshold_is_the_training_midpoint(low: float, high: float) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    Y = np.stack([X[:, 0], np.where(X[:, 1] > 0, high, low)], 1)  # the gripper is a step of a feature
    probe = build_probe("ridge", device="cpu").fit(X, Y)
    assert probe.gripper_threshold == pytest.approx((low + high) / 2)
    assert probe.evaluate(X, Y)["gripper_accuracy"] > 0.85  # thresholding at 0 scores 0.63 on the Bridge case
