"""Probes on frozen features: closed-form ridge, MLP, attentive; and their metrics.

Every probe has the same API (for the Bridge/LIBERO probing apps)::

    probe = build_probe("ridge")                 # or "mlp", "attentive"; kwargs = config fields
    probe.fit(train_X, train_Y, groups=episode_ids)
    pred = probe.predict(test_X)                 # [n, K]
    metrics = probe.evaluate(test_X, test_Y)     # {"mse", "r2_mean", "r2_per_dim", "gripper_accuracy"}

``X`` is ``[n, D]`` for ridge/MLP and ``[n, N, D]`` tokens for the attentive probe; ``Y`` is
``[n, K]`` (actions: the last dimension is the gripper, -1 open / +1 closed). Inputs may be numpy
or torch; computation runs on ``device`` (``"auto"`` = CUDA when available).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from avbr.registry import Registry

from .readouts import AttentionPool
from .registry import resolve_device

__all__ = [
    "r2_per_dim", "mse", "gripper_accuracy", "regression_metrics",
    "Probe", "RidgeConfig", "RidgeProbe", "TrainConfig", "MLPProbe", "AttentiveProbe",
    "PROBES", "build_probe", "kfold_indices",
]

Array = np.ndarray | torch.Tensor


def _t(x: Array, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=dtype)


# -- metrics -----------------------------------------------------------------------------------
def r2_per_dim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per output dimension: ``[n, K]`` x 2 -> ``[K]``.

    ``1 - SS_res / SS_tot`` with ``SS_tot`` around the target's own mean; a constant target
    dimension gives ``nan``.
    """
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / ss_tot


def mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error over all entries."""
    return float(((pred - target) ** 2).mean())


def gripper_accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of samples whose last dimension has the target's sign (closed > 0, open <= 0)."""
    return float(((pred[:, -1] > 0) == (target[:, -1] > 0)).float().mean())


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float | list[float]]:
    """``{"mse", "r2_mean", "r2_per_dim", "gripper_accuracy"}`` (JSON-able)."""
    r2 = r2_per_dim(pred.double(), target.double())
    return {
        "mse": mse(pred, target),
        "r2_mean": float(r2.nanmean()),
        "r2_per_dim": [float(v) for v in r2],
        "gripper_accuracy": gripper_accuracy(pred, target),
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
class Probe:
    """Base class: ``fit`` / ``predict`` / ``evaluate``."""

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> Probe:
        raise NotImplementedError

    def predict(self, X: Array) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, X: Array, Y: Array) -> dict[str, float | list[float]]:
        """Metrics of ``predict(X)`` against ``Y`` (see :func:`regression_metrics`)."""
        pred = self.predict(X)
        return regression_metrics(pred.float().cpu(), torch.as_tensor(Y).float().cpu())


@dataclass
class RidgeConfig:
    """Closed-form ridge regression with the penalty chosen by K-fold cross-validation.

    Objective on standardised features and targets: ``mean ||X W - Y||^2 + lam ||W||^2``.

    Attributes:
        lambdas: candidate penalties ``lam`` (relative to the mean squared error, so comparable
            across sample sizes); default ``10^-6 .. 10^3``, 19 values.
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

    Features are standardised with the training mean/std; targets are centred and scaled. The
    Gram matrix ``X^T X / n`` (``[D, D]``, or ``X X^T / n`` when ``n < D``) is decomposed once per
    fold with ``torch.linalg.eigh``, so every ``lam`` costs one matrix product.

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

    @staticmethod
    def _standardise(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = X.mean(0), X.std(0, unbiased=False)
        return mean, torch.where(std > 1e-12, std, torch.ones_like(std))

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> RidgeProbe:
        """``X [n, D]``, ``Y [n, K]``; ``groups [n]`` keeps each group inside one CV fold."""
        X, Y = _t(X, self.device, torch.float64), _t(Y, self.device, torch.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"ridge expects X [n, D] and Y [n, K], got {tuple(X.shape)} and {tuple(Y.shape)}")
        lambdas = list(self.cfg.lambdas)
        errors = torch.zeros(len(lambdas), dtype=torch.float64, device=self.device)
        for val in kfold_indices(len(X), self.cfg.folds, groups, self.cfg.seed):
            train = np.setdiff1d(np.arange(len(X)), val)
            xm, xs = self._standardise(X[train])
            ym, ys = self._standardise(Y[train])
            Ws = self._solve((X[train] - xm) / xs, (Y[train] - ym) / ys, lambdas)
            xv, yv = (X[val] - xm) / xs, (Y[val] - ym) / ys
            errors += torch.stack([((xv @ W - yv) ** 2).mean() for W in Ws]) * len(val) / len(X)
        best = int(errors.argmin())
        self.lam = lambdas[best]
        self.cv_mse = {lam: float(e) for lam, e in zip(lambdas, errors)}
        self.x_mean, self.x_std = self._standardise(X)
        self.y_mean, self.y_std = self._standardise(Y)
        self.W = self._solve((X - self.x_mean) / self.x_std, (Y - self.y_mean) / self.y_std, [self.lam])[0]
        return self

    def predict(self, X: Array) -> torch.Tensor:
        """``X [n, D]`` -> ``[n, K]`` (float32, on the probe's device)."""
        X = _t(X, self.device, torch.float64)
        return (((X - self.x_mean) / self.x_std) @ self.W * self.y_std + self.y_mean).float()


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

    def fit(self, X: Array, Y: Array, groups: Array | None = None) -> Probe:
        """``X [n, D]`` (``[n, N, D]`` for the attentive probe), ``Y [n, K]``. ``groups`` is
        accepted for API symmetry; these probes do not cross-validate."""
        torch.manual_seed(self.cfg.seed)
        X, Y = _t(X, self.device), _t(Y, self.device)
        if (X.ndim == 3) != self.token_input:
            raise ValueError(f"{type(self).__name__} expects X {'[n, N, D]' if self.token_input else '[n, D]'}, got {tuple(X.shape)}")
        flat = X.reshape(-1, X.shape[-1])  # standardise per channel over samples (and tokens)
        self.x_mean, self.x_std = flat.mean(0), flat.std(0).clamp_min(1e-6)
        self.y_mean, self.y_std = Y.mean(0), Y.std(0).clamp_min(1e-6)
        Xs, Ys = (X - self.x_mean) / self.x_std, (Y - self.y_mean) / self.y_std
        self.net = self._net(X.shape[-1], Y.shape[-1]).to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        self.net.train()
        for _ in range(self.cfg.epochs):
            for idx in torch.randperm(len(Xs), generator=gen).split(self.cfg.batch_size):
                idx = idx.to(self.device)
                loss = ((self.net(Xs[idx]) - Ys[idx]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def predict(self, X: Array) -> torch.Tensor:
        """-> ``[n, K]`` float32 on the probe's device."""
        X = (_t(X, self.device) - self.x_mean) / self.x_std
        return torch.cat([self.net(x) for x in X.split(4096)]) * self.y_std + self.y_mean


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
