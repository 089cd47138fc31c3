"""Probes on frozen features, their metrics, and the seeded split-fit-select-report loop.

A probe maps features ``X [M, F]`` to targets ``Y [M, A]``. Probes are registered by name in
``PROBES`` (``ridge``, ``mlp``); each fits on train and selects its hyper-parameters on val
(DINOv2's protocol: select on val, report on test), then :func:`evaluate_probe` reports test
metrics of the selected head only. Classification tasks (temporal order, spatial relation)
regress ``+-1`` labels and take the sign, so both probes serve both kinds of task.

Letters: ``M`` samples, ``F`` feature width, ``A`` target width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from avbr.eval.splits import Split, SplitFn, check_no_leakage, split_by_group
from avbr.registry import Registry

__all__ = [
    "ProbeSettings",
    "FittedProbe",
    "PROBES",
    "fit_probe",
    "r2_per_dim",
    "regression_metrics",
    "sign_accuracy",
    "evaluate_probe",
    "summarise_seeds",
]


@dataclass
class ProbeSettings:
    """Hyper-parameter grids of the probes (each probe picks its best point on val).

    Attributes:
        ridge_alphas: ridge penalties, relative to the mean eigenvalue of the standardised Gram
            matrix (so the grid is scale-free).
        mlp_hidden: hidden width of the 2-layer MLP probe.
        mlp_epochs: training epochs of the MLP probe; the epoch with the best val score is kept.
        mlp_lr: AdamW learning rate.
        mlp_weight_decays: AdamW weight decays tried (one MLP each).
        mlp_batch_size: minibatch size.
        mlp_eval_every: epochs between val evaluations (checkpoint selection).
    """

    ridge_alphas: list[float] = field(default_factory=lambda: [1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    mlp_hidden: int = 256
    mlp_epochs: int = 150
    mlp_lr: float = 1e-3
    mlp_weight_decays: list[float] = field(default_factory=lambda: [1e-4, 1e-2])
    mlp_batch_size: int = 256
    mlp_eval_every: int = 5

    def __post_init__(self) -> None:
        if not self.ridge_alphas or min(self.ridge_alphas) <= 0:
            raise ValueError(f"ridge_alphas must be positive, got {self.ridge_alphas}")
        if self.mlp_epochs < 1 or self.mlp_eval_every < 1 or self.mlp_hidden < 1:
            raise ValueError("mlp_epochs, mlp_eval_every and mlp_hidden must be >= 1")


@dataclass
class FittedProbe:
    """A fitted probe: ``predict(X [M, F]) -> Y [M, A]`` plus the hyper-parameters chosen on val."""

    predict: Callable[[np.ndarray], np.ndarray]
    hparams: dict[str, Any] = field(default_factory=dict)
    val_score: float = float("nan")


ScoreFn = Callable[[np.ndarray, np.ndarray], float]
"""``score(y_true [M, A], y_pred [M, A]) -> float``, higher is better (used for selection on val)."""

PROBES: Registry[Callable[..., FittedProbe]] = Registry("probe")


# -- metrics ---------------------------------------------------------------------------------
def r2_per_dim(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Coefficient of determination per target dimension, ``[A]``.

    A dimension that is constant in ``y`` has no defined R^2: it is ``nan`` (and skipped by the
    means), not a misleading 0 or 1.
    """
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    ss_res = ((y - yhat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 1e-12 * max(1, len(y)), 1.0 - ss_res / ss_tot, np.nan)


def mean_r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean of :func:`r2_per_dim` over the defined dimensions (the val selection score)."""
    r2 = r2_per_dim(y, yhat)
    return float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan")


def sign_accuracy(y: np.ndarray, yhat: np.ndarray) -> float:
    """Accuracy of ``sign(yhat)`` against ``+-1`` labels ``y`` (classification score)."""
    return float((np.sign(np.asarray(yhat)) == np.sign(np.asarray(y))).mean())


def regression_metrics(
    y: np.ndarray, yhat: np.ndarray, gripper_dim: int | None = None, gripper_threshold: float = 0.0
) -> dict[str, Any]:
    """Test metrics of an action probe.

    Args:
        y: ``[M, A]`` true actions.
        yhat: ``[M, A]`` predictions.
        gripper_dim: index of the gripper dimension (``-1`` = last) or None to skip gripper accuracy.
        gripper_threshold: value that separates open from closed (both ``y`` and ``yhat`` are
            binarised with it).

    Returns:
        ``r2_per_dim`` (list, ``None`` where undefined), ``r2_mean``, ``mse`` (mean over dims),
        ``mse_per_dim`` and ``gripper_accuracy`` (or ``None``).
    """
    r2 = r2_per_dim(y, yhat)
    mse_dim = ((np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) ** 2).mean(0)
    out: dict[str, Any] = {
        "r2_per_dim": [None if not math.isfinite(v) else float(v) for v in r2],
        "r2_mean": float(np.nanmean(r2)) if np.isfinite(r2).any() else None,
        "mse": float(mse_dim.mean()),
        "mse_per_dim": [float(v) for v in mse_dim],
        "gripper_accuracy": None,
    }
    if gripper_dim is not None:
        g, gh = np.asarray(y)[:, gripper_dim], np.asarray(yhat)[:, gripper_dim]
        out["gripper_accuracy"] = float(((g > gripper_threshold) == (gh > gripper_threshold)).mean())
    return out


# -- probes ----------------------------------------------------------------------------------
class _Standardiser:
    """Per-column standardisation with train statistics (constant columns keep scale 1)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.mean = x.mean(0, keepdim=True)
        std = x.std(0, keepdim=True)
        self.std = torch.where(std > 1e-8, std, torch.ones_like(std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@PROBES.register("ridge")
def fit_ridge(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    settings: ProbeSettings, score: ScoreFn, seed: int = 0,
) -> FittedProbe:
    """Closed-form ridge regression on standardised features, penalty chosen on val.

    One eigendecomposition serves the whole penalty grid: of the ``F x F`` Gram ``X^T X`` when
    ``F <= M`` (primal), else of the ``M x M`` kernel ``X X^T`` (dual; flattened patch tokens).
    ``seed`` is unused (the fit is deterministic) but kept for the common probe signature.
    """
    del seed
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    std = _Standardiser(xt)
    xs = std(xt).double()  # [M, F]
    y = torch.as_tensor(y_train, dtype=torch.float64)
    y_mean = y.mean(0, keepdim=True)
    yc = y - y_mean  # [M, A]
    m, f = xs.shape
    if f <= m:
        evals, evecs = torch.linalg.eigh(xs.T @ xs)  # [F], [F, F]
        proj = evecs.T @ (xs.T @ yc)  # [F, A]

        def weights(alpha: float) -> torch.Tensor:
            return evecs @ (proj / (evals + alpha)[:, None])  # [F, A]
    else:
        evals, evecs = torch.linalg.eigh(xs @ xs.T)  # [M], [M, M]
        proj = evecs.T @ yc  # [M, A]

        def weights(alpha: float) -> torch.Tensor:
            return xs.T @ (evecs @ (proj / (evals + alpha)[:, None]))  # [F, A]

    scale = float(evals.clamp(min=0).mean()) or 1.0
    xv = std(torch.as_tensor(x_val, dtype=torch.float32)).double()
    best: tuple[float, float, torch.Tensor] | None = None
    for a in settings.ridge_alphas:
        w = weights(a * scale)
        s = score(y_val, (xv @ w + y_mean).numpy())
        if best is None or (math.isfinite(s) and not (s <= best[0])):
            best = (s, a, w)
    assert best is not None
    s_best, a_best, w_best = best
    w32, b32 = w_best.float(), y_mean.float()

    def predict(x: np.ndarray) -> np.ndarray:
        return (std(torch.as_tensor(x, dtype=torch.float32)) @ w32 + b32).numpy()

    return FittedProbe(predict, {"alpha": a_best}, s_best)


@PROBES.register("mlp")
def fit_mlp(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    settings: ProbeSettings, score: ScoreFn, seed: int = 0,
) -> FittedProbe:
    """2-layer MLP ``F -> hidden -> A`` (GELU) on standardised features, MSE loss, AdamW.

    One MLP per weight decay of ``settings.mlp_weight_decays``; the (weight decay, epoch) with the
    best val score is kept (checkpoint selection on val, never on test).
    """
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    std = _Standardiser(xt)
    xs, xv = std(xt), std(torch.as_tensor(x_val, dtype=torch.float32))
    y = torch.as_tensor(y_train, dtype=torch.float32)
    y_std = _Standardiser(y)
    ys = y_std(y)
    best: tuple[float, dict[str, Any], dict[str, torch.Tensor]] | None = None
    for wd in settings.mlp_weight_decays:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(xs.shape[1], settings.mlp_hidden), nn.GELU(), nn.Linear(settings.mlp_hidden, ys.shape[1]))
        opt = torch.optim.AdamW(net.parameters(), lr=settings.mlp_lr, weight_decay=wd)
        for epoch in range(1, settings.mlp_epochs + 1):
            net.train()
            for idx in torch.randperm(len(xs), generator=gen).split(settings.mlp_batch_size):
                loss = nn.functional.mse_loss(net(xs[idx]), ys[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch % settings.mlp_eval_every and epoch != settings.mlp_epochs:
                continue
            net.eval()
            with torch.no_grad():
                pred = (net(xv) * y_std.std + y_std.mean).numpy()
            s = score(y_val, pred)
            if best is None or (math.isfinite(s) and not (s <= best[0])):
                best = (s, {"weight_decay": wd, "epoch": epoch}, {k: v.clone() for k, v in net.state_dict().items()})
    assert best is not None
    s_best, hp, state = best
    net.load_state_dict(state)
    net.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (net(std(torch.as_tensor(x, dtype=torch.float32))) * y_std.std + y_std.mean).numpy()

    return FittedProbe(predict, hp, s_best)


def fit_probe(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    settings: ProbeSettings | None = None, score: ScoreFn = mean_r2, seed: int = 0,
) -> FittedProbe:
    """Fit the registered probe ``name`` (``ridge | mlp``) on train, selecting on val."""
    y_train, y_val = np.asarray(y_train).reshape(len(y_train), -1), np.asarray(y_val).reshape(len(y_val), -1)
    return PROBES.get(name)(x_train, y_train, x_val, y_val, settings or ProbeSettings(), score, seed)


# -- the seeded loop -------------------------------------------------------------------------
def summarise_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of every scalar (and every element of list) metric."""
    out: dict[str, Any] = {}
    for key, first in per_seed[0].items():
        if isinstance(first, (int, float)) or first is None:
            vals = [r[key] for r in per_seed if r[key] is not None]
            out[key] = None if not vals else {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
        elif isinstance(first, list):
            cols = list(zip(*[r[key] for r in per_seed]))
            out[key] = [
                None if all(v is None for v in col) else {
                    "mean": float(np.mean([v for v in col if v is not None])),
                    "std": float(np.std([v for v in col if v is not None])),
                }
                for col in cols
            ]
    return out


def evaluate_probe(
    probe: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    seeds: Sequence[int],
    metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]],
    settings: ProbeSettings | None = None,
    score: ScoreFn = mean_r2,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_fn: SplitFn = split_by_group,
) -> dict[str, Any]:
    """Split by group, fit, select on val, report test, for every seed.

    Args:
        probe: registry name of the probe.
        x: ``[M, F]`` features.
        y: ``[M, A]`` targets.
        groups: ``[M]`` trajectory id of every sample (the split unit).
        seeds: one split and one probe initialisation per seed.
        metrics: ``metrics(y_test, yhat_test, y_train) -> dict`` of test metrics (``y_train`` lets
            a metric calibrate, e.g. the gripper threshold, without looking at test).
        settings: probe hyper-parameter grids.
        score: selection score on val (higher is better).
        fractions: train/val/test shares of the groups.
        split_fn: the split function; every split it returns is checked with
            :func:`check_no_leakage` (a leaky split raises ``LeakageError``).

    Returns:
        ``{"per_seed": [...], "summary": {metric: {"mean", "std"}}}``; each per-seed entry has the
        split sizes, the chosen hyper-parameters, the val score and the test metrics.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32).reshape(len(x), -1)
    if len(x) != len(groups):
        raise ValueError(f"{len(x)} feature rows but {len(groups)} group ids")
    per_seed = []
    for seed in seeds:
        split: Split = split_fn(groups, fractions, seed)
        check_no_leakage(groups, split)
        fitted = fit_probe(probe, x[split.train], y[split.train], x[split.val], y[split.val], settings, score, seed)
        test = metrics(y[split.test], fitted.predict(x[split.test]), y[split.train])
        per_seed.append({"seed": int(seed), "sizes": split.sizes(), "hparams": fitted.hparams,
                         "val_score": float(fitted.val_score), **test})
    scalar = [{k: v for k, v in r.items() if k not in ("seed", "sizes", "hparams")} for r in per_seed]
    return {"per_seed": per_seed, "summary": summarise_seeds(scalar)}
