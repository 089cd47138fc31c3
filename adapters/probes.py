"""Probes on frozen features: closed-form ridge, MLP, attentive; and their metrics.

Every probe has the same API (for the Bridge/LIBERO probing apps)::

    probe = build_probe("ridge")                 # or "mlp", "attentive"; kwargs = config fields
    probe.fit(train_X, train_Y, groups=episode_ids)
    pred = probe.predict(test_X)                 # [n, K]
    metrics = probe.evaluate(test_X, test_Y)     # see regression_metrics

``X`` is ``[n, D]`` for ridge/MLP and ``[n, N, D]`` tokens for the attentive probe; ``Y`` is
``[n, K]`` (actions: the last dimension is the gripper). Inputs may be numpy or torch;
computation runs on ``device`` (``"auto"`` = CUDA when available).

This module is the one implementation of the probe models and their metrics; ``avbr.eval.probing.protocol``
adds the eval apps' protocol on top (hyper-parameters selected on a val split, test reported,
summaries over seeds) through :meth:`RidgeProbe.fit_path` and :meth:`MLPProbe.train_epochs`.

Metrics take ``(y, yhat)``: the true targets first, the predictions second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from avbr.registry import Registry

from .readouts import AttentionPool
from .registry import resolve_device

__all__ = [
    "r2_per_dim", "mean_r2", "mse", "gripper_accuracy", "midpoint_threshold", "sign_accuracy",
    "regression_metrics",
    "Standardiser", "Probe", "RidgeConfig", "RidgeProbe", "TrainConfig", "MLPProbe", "AttentiveProbe",
    "PROBES", "build_probe", "kfold_indices",
]

Array = np.ndarray | torch.Tensor


def _t(x: Array, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(device=device, dtype=dtype)


# -- metrics -----------------------------------------------------------------------------------
def r2_per_dim(y: Array, yhat: Array) -> torch.Tensor:
    """Coefficient of determination per target dimension: ``[n, K]`` x 2 -> ``[K]``.

    ``1 - SS_res / SS_tot`` with ``SS_tot`` around the mean of the true ``y``. A dimension that is
    constant in ``y`` has no defined R^2: it is ``nan`` (skipped by the means), not a misleading 0
    or 1. Computed in the inputs' floating dtype (integer inputs: float64); the JSON metrics below
    pass float64.
    """
    y, yhat = torch.as_tensor(y), torch.as_tensor(yhat)
    dtype = torch.promote_types(y.dtype, yhat.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float64
    y, yhat = y.to(dtype), yhat.to(y.device, dtype)
    ss_res = ((y - yhat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return torch.where(ss_tot > 1e-12 * max(1, len(y)), 1.0 - ss_res / ss_tot, torch.full_like(ss_tot, float("nan")))


def mean_r2(y: Array, yhat: Array) -> float:
    """Mean of :func:`r2_per_dim` (float64) over the defined dimensions; ``nan`` if none is."""
    r2 = r2_per_dim(_t(y, dtype=torch.float64), _t(yhat, dtype=torch.float64))
    return float(r2.nanmean()) if r2.isfinite().any() else float("nan")


def mse(y: Array, yhat: Array) -> float:
    """Mean squared error over all entries (float64)."""
    return float(((_t(y, dtype=torch.float64) - _t(yhat, dtype=torch.float64)) ** 2).mean())


def midpoint_threshold(y: Array) -> float:
    """Open/closed threshold of a gripper: the midpoint of its range in ``y [n]`` (training targets).

    LIBERO's gripper is -1 open / +1 closed -> 0; Bridge V2's is 0 closed / 1 open -> 0.5.
    """
    y = _t(y, dtype=torch.float64)
    return float(0.5 * (y.min() + y.max()))


def gripper_accuracy(y: Array, yhat: Array, threshold: float = 0.0, dim: int = -1) -> float:
    """Fraction of samples whose gripper (``dim``) is on the same side of ``threshold`` in ``yhat``
    as in ``y``. Take ``threshold`` from the training targets (:func:`midpoint_threshold`; fitted
    probes store it as ``gripper_threshold``): the default 0 is right for -1/+1 grippers only."""
    g, gh = _t(y, dtype=torch.float64)[:, dim], _t(yhat, dtype=torch.float64)[:, dim]
    return float(((g > threshold) == (gh > threshold)).double().mean())


def sign_accuracy(y: Array, yhat: Array) -> float:
    """Accuracy of ``sign(yhat)`` against ``+-1`` labels ``y`` (classification by regression)."""
    return float((torch.as_tensor(yhat).sign() == torch.as_tensor(y).sign()).double().mean())


def regression_metrics(y: Array, yhat: Array, gripper_dim: int | None = None, gripper_threshold: float = 0.0) -> dict[str, Any]:
    """Test metrics of a regression probe (JSON-able).

    Args:
        y: ``[n, K]`` true targets.
        yhat: ``[n, K]`` predictions.
        gripper_dim: index of the gripper dimension (``-1`` = last) or None to skip gripper accuracy.
        gripper_threshold: open/closed threshold of :func:`gripper_accuracy`.

    Returns:
        ``r2_per_dim`` (list, ``None`` where undefined), ``r2_mean`` (``None`` if no dimension is
        defined), ``mse`` (mean over dims), ``mse_per_dim`` and ``gripper_accuracy`` (or ``None``).
    """
    y, yhat = _t(y, dtype=torch.float64), _t(yhat, dtype=torch.float64)
    r2 = r2_per_dim(y, yhat)
    mse_dim = ((y - yhat) ** 2).mean(0)
    return {
        "r2_per_dim": [v if np.isfinite(v) else None for v in r2.tolist()],
        "r2_mean": float(r2.nanmean()) if r2.isfinite().any() else None,
        "mse": float(mse_dim.mean()),
        "mse_per_dim": mse_dim.tolist(),
        "gripper_accuracy": None if gripper_dim is None else gripper_accuracy(y, yhat, gripper_threshold, gripper_dim),
    }


def kfold_indices(n: int, folds: int, groups: Array | None = None, seed: int = 0) -> list[np.ndarray]:
    """Validation indices of ``folds`` folds. With ``groups`` (e.g. episode ids) whole groups stay
    in one fold, so frames of one episode never sit on both sides; without, samples are shuffled."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return np.array_split(rng.permutation(n), folds)
    g = groups.cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)  # ints or str ids
    uniq = rng.permutation(np.unique(g))
    if len(uniq) < folds:
        raise ValueError(f"{folds}-fold cross-validation needs at least {folds} groups, got {len(uniq)}")
    return [np.flatnonzero(np.isin(g, part)) for part in np.array_split(uniq, folds)]


# -- probes ------------------------------------------------------------------------------------
class Standardiser:
    """Per-channel standardisation with training statistics over all leading dimensions
    (``[n, D]`` or ``[n, N, D]`` -> statistics ``[D]``); constant channels keep scale 1."""

    def __init__(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])  # [n (N), D]
        self.mean = flat.mean(0)
        std = flat.std(0)
        self.std = torch.where(std > 1e-8, std, torch.ones_like(std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class Probe:
    """Base class: ``fit`` / ``predict`` / ``evaluate``.

    After ``fit``: ``x_norm`` and ``y_norm`` (:class:`Standardiser` of the training features and
    targets) and ``gripper_threshold`` (:func:`midpoint_threshold` of the training targets' last
    dimension, used by :meth:`evaluate`).
    """

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> Probe:
        raise NotImplementedError

    def predict(self, X: Array) -> torch.Tensor:
        raise NotImplementedError

    def _fit_normalisation(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        self.x_norm, self.y_norm = Standardiser(X), Standardiser(Y)
        self.gripper_threshold = midpoint_threshold(Y[:, -1])

    def evaluate(self, X: Array, Y: Array) -> dict[str, Any]:
        """:func:`regression_metrics` of ``predict(X)`` against ``Y``, gripper = last dimension
        binarised at the fitted ``gripper_threshold``."""
        return regression_metrics(Y, self.predict(X).cpu(), gripper_dim=-1, gripper_threshold=self.gripper_threshold)


@dataclass
class RidgeConfig:
    """Closed-form ridge regression with the penalty chosen by K-fold cross-validation.

    Objective on standardised features and targets: ``mean ||X W - Y||^2 + lam ||W||^2``.

    Attributes:
        lambdas: candidate penalties ``lam`` (relative to the mean squared error, i.e. to the mean
            eigenvalue ``1`` of the standardised ``X^T X / n``, so comparable across sample sizes);
            default ``10^-6 .. 10^3``, 19 values.
        folds: K of the cross-validation (>= 2).
        seed: fold assignment seed.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; solves run in float64.
    """

    lambdas: list[float] = field(default_factory=lambda: np.logspace(-6, 3, 19).tolist())
    folds: int = 5
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"ridge needs folds >= 2 for cross-validation, got {self.folds}")
        if not self.lambdas or min(self.lambdas) < 0:
            raise ValueError("ridge lambdas must be a non-empty list of non-negative numbers")


class RidgeProbe(Probe):
    """Linear probe ``Y ~ X W + b``, solved in closed form through an eigendecomposition.

    Features and targets are standardised with the training statistics. The Gram matrix
    ``X^T X / n`` (``[D, D]``, or ``X X^T / n`` when ``n < D``) is decomposed once per fit with
    ``torch.linalg.eigh``, so every ``lam`` costs one matrix product.

    Attributes (after ``fit``): ``lam`` the chosen penalty, ``cv_mse`` ``{lam: mean validation
    MSE in standardised target units}``.
    """

    def __init__(self, cfg: RidgeConfig | None = None, **kwargs) -> None:
        self.cfg = cfg or RidgeConfig(**kwargs)
        self.device = resolve_device(self.cfg.device)

    @staticmethod
    def _solve(X: torch.Tensor, Y: torch.Tensor, lambdas: list[float]) -> list[torch.Tensor]:
        """Weights ``[D, K]`` for each ``lam`` on already standardised ``X [n, D]``, ``Y [n, K]``."""
        n, d = X.shape
        if d <= n:  # primal: (X^T X / n + lam I) W = X^T Y / n
            s, V = torch.linalg.eigh(X.T @ X / n)
            s = s.clamp_min(0)
            proj = V.T @ (X.T @ Y / n)  # [D, K]
            return [V @ (proj / (s + lam)[:, None]) for lam in lambdas]
        s, U = torch.linalg.eigh(X @ X.T / n)  # dual: W = X^T (X X^T / n + lam I)^-1 Y / n
        s = s.clamp_min(0)
        proj = U.T @ Y  # [n, K]
        return [X.T @ (U @ (proj / (s + lam)[:, None])) / n for lam in lambdas]

    def _inputs(self, X: Array, Y: Array) -> tuple[torch.Tensor, torch.Tensor]:
        X, Y = _t(X, self.device, torch.float64), _t(Y, self.device, torch.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"ridge expects X [n, D] and Y [n, K], got {tuple(X.shape)} and {tuple(Y.shape)}")
        return X, Y

    def fit_path(self, X: Array, Y: Array) -> RidgeProbe:
        """Solve for every penalty of ``cfg.lambdas`` on ``X [n, D]``, ``Y [n, K]`` without
        selecting one: then :meth:`predict_path` and :meth:`select` (used for selection on a
        separate val split, and by the cross-validation of :meth:`fit`)."""
        X, Y = self._inputs(X, Y)
        self._fit_normalisation(X, Y)
        self.path = self._solve(self.x_norm(X), self.y_norm(Y), list(self.cfg.lambdas))
        return self.select(0)

    def predict_path(self, X: Array) -> list[torch.Tensor]:
        """``X [n, D]`` -> one prediction ``[n, K]`` (float64) per penalty of ``cfg.lambdas``."""
        Xs = self.x_norm(_t(X, self.device, torch.float64))
        return [self.y_norm.inverse(Xs @ W) for W in self.path]

    def select(self, i: int) -> RidgeProbe:
        """Keep the ``i``-th penalty of the path for :meth:`predict`."""
        self.lam, self.W = self.cfg.lambdas[i], self.path[i]
        return self

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> RidgeProbe:
        """``X [n, D]``, ``Y [n, K]``; ``groups [n]`` keeps each group inside one CV fold. The
        penalty with the lowest CV MSE (standardised targets) is refitted on all samples."""
        X, Y = self._inputs(X, Y)
        lambdas = list(self.cfg.lambdas)
        errors = torch.zeros(len(lambdas), dtype=torch.float64, device=self.device)
        for val in kfold_indices(len(X), self.cfg.folds, groups, self.cfg.seed):
            train = np.setdiff1d(np.arange(len(X)), val)
            fold = RidgeProbe(self.cfg).fit_path(X[train], Y[train])
            yv = fold.y_norm(Y[val])
            errors += torch.stack([((fold.y_norm(p) - yv) ** 2).mean() for p in fold.predict_path(X[val])]) * len(val) / len(X)
        self.cv_mse = {lam: float(e) for lam, e in zip(lambdas, errors)}
        return self.fit_path(X, Y).select(int(errors.argmin()))

    def predict(self, X: Array) -> torch.Tensor:
        """``X [n, D]`` -> ``[n, K]`` (float32, on the probe's device)."""
        return self.y_norm.inverse(self.x_norm(_t(X, self.device, torch.float64)) @ self.W).float()


@dataclass
class TrainConfig:
    """Gradient-trained probes (MLP, attentive).

    Attributes:
        hidden: hidden width of the MLP head.
        layers: hidden layers of the MLP head (0 = linear head).
        num_heads: attention heads of the attentive probe's pooling.
        epochs: passes over the training set.
        batch_size: samples per step.
        lr: AdamW learning rate; weight_decay: AdamW weight decay.
        seed: initialisation and shuffling seed.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    hidden: int = 256
    layers: int = 2
    num_heads: int = 8
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"


def _mlp(d_in: int, d_out: int, hidden: int, layers: int) -> nn.Sequential:
    dims = [d_in] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*mods, nn.Linear(dims[-1], d_out))


class _TrainedProbe(Probe):
    """Shared training loop: standardised inputs and targets, AdamW, MSE loss."""

    token_input = False

    def __init__(self, cfg: TrainConfig | None = None, **kwargs) -> None:
        self.cfg = cfg or TrainConfig(**kwargs)
        self.device = resolve_device(self.cfg.device)

    def _net(self, d_in: int, d_out: int) -> nn.Module:
        raise NotImplementedError

    def train_epochs(self, X: Array, Y: Array) -> Iterator[int]:
        """Train on ``X [n, D]`` (``[n, N, D]`` for the attentive probe), ``Y [n, K]``, yielding
        the epoch number (1-based) after each epoch with the net in eval mode, so the caller can
        :meth:`predict` and keep checkpoints (selection on a val split)."""
        torch.manual_seed(self.cfg.seed)
        X, Y = _t(X, self.device), _t(Y, self.device)
        if (X.ndim == 3) != self.token_input:
            raise ValueError(f"{type(self).__name__} expects X {'[n, N, D]' if self.token_input else '[n, D]'}, got {tuple(X.shape)}")
        self._fit_normalisation(X, Y)
        Xs, Ys = self.x_norm(X), self.y_norm(Y)
        self.net = self._net(X.shape[-1], Y.shape[-1]).to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        for epoch in range(1, self.cfg.epochs + 1):
            self.net.train()
            for idx in torch.randperm(len(Xs), generator=gen).split(self.cfg.batch_size):
                idx = idx.to(self.device)
                loss = ((self.net(Xs[idx]) - Ys[idx]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.net.eval()
            yield epoch

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> Probe:
        """Train for ``cfg.epochs`` (see :meth:`train_epochs`). ``groups`` is accepted for API
        symmetry; these probes do not cross-validate."""
        for _ in self.train_epochs(X, Y):
            pass
        return self

    @torch.no_grad()
    def predict(self, X: Array) -> torch.Tensor:
        """-> ``[n, K]`` float32 on the probe's device."""
        X = self.x_norm(_t(X, self.device))
        return self.y_norm.inverse(torch.cat([self.net(x) for x in X.split(4096)]))


class MLPProbe(_TrainedProbe):
    """``[n, D]`` -> MLP (``layers`` x ``hidden``, GELU) -> ``[n, K]``."""

    def _net(self, d_in: int, d_out: int) -> nn.Module:
        return _mlp(d_in, d_out, self.cfg.hidden, self.cfg.layers)


class _AttentiveNet(nn.Module):
    def __init__(self, d_in: int, d_out: int, num_heads: int) -> None:
        super().__init__()
        self.pool = AttentionPool(d_in, num_heads)
        self.head = nn.Linear(d_in, d_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, D]`` -> ``[B, K]``."""
        return self.head(self.pool(tokens))


class AttentiveProbe(_TrainedProbe):
    """``[n, N, D]`` tokens -> learned-query attention pooling -> linear -> ``[n, K]``."""

    token_input = True

    def _net(self, d_in: int, d_out: int) -> nn.Module:
        return _AttentiveNet(d_in, d_out, self.cfg.num_heads)


PROBES: Registry[Callable[..., Probe]] = Registry("probe")
PROBES.register("ridge")(RidgeProbe)
PROBES.register("mlp")(MLPProbe)
PROBES.register("attentive")(AttentiveProbe)


def build_probe(name: str, **kwargs) -> Probe:
    """``build_probe("ridge", folds=5)``; kwargs are the fields of :class:`RidgeConfig` (ridge)
    or :class:`TrainConfig` (mlp, attentive)."""
    return PROBES.get(name)(**kwargs)
