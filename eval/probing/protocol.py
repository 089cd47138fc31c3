"""The eval apps' probing protocol: fit on train, select hyper-parameters on val, report on test,
summarise over seeds.

The probe models and metrics are ``avbr.adapters.probes`` (one implementation); this module runs
them under DINOv2's protocol (select on val, report on test). Probes are registered by name in
``PROBES`` (``ridge``, ``mlp``); each fits on train and selects its hyper-parameters on val, then
:func:`evaluate_probe` reports test metrics of the selected head only. Classification tasks
(temporal order, spatial relation) regress ``+-1`` labels and take the sign, so both probes serve
both kinds of task.

Letters: ``M`` samples, ``F`` feature width, ``A`` target width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from avbr.adapters.probes import MLPProbe, RidgeProbe, mean_r2
from avbr.eval.probing.splits import Split, SplitFn, check_no_leakage, split_by_group
from avbr.registry import Registry

__all__ = [
    "ProbeSettings",
    "FittedProbe",
    "PROBES",
    "fit_probe",
    "evaluate_probe",
    "summarise_seeds",
]


@dataclass
class ProbeSettings:
    """Hyper-parameter grids of the probes (each probe picks its best point on val).

    Attributes:
        ridge_alphas: ridge penalties ``lam`` of :class:`avbr.adapters.probes.RidgeConfig`
            (relative to the mean eigenvalue of the standardised Gram matrix, so scale-free).
        mlp_hidden: hidden width of the 2-layer MLP probe.
        mlp_epochs: training epochs of the MLP probe; the epoch with the best val score is kept.
        mlp_lr: AdamW learning rate.
        mlp_weight_decays: AdamW weight decays tried (one MLP each).
        mlp_batch_size: minibatch size.
        mlp_eval_every: epochs between val evaluations (checkpoint selection).
        device: where the probes run (``"cpu"``, ``"cuda"``, ``"auto"``).
    """

    ridge_alphas: list[float] = field(default_factory=lambda: [1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    mlp_hidden: int = 256
    mlp_epochs: int = 150
    mlp_lr: float = 1e-3
    mlp_weight_decays: list[float] = field(default_factory=lambda: [1e-4, 1e-2])
    mlp_batch_size: int = 256
    mlp_eval_every: int = 5
    device: str = "cpu"

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


def _improves(s: float, best: float) -> bool:
    """Selection rule after the first candidate: a finite score above the best (ties keep the
    earlier one; a finite score replaces a ``nan`` best)."""
    return math.isfinite(s) and not s <= best


@PROBES.register("ridge")
def fit_ridge(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    settings: ProbeSettings, score: ScoreFn, seed: int = 0,
) -> FittedProbe:
    """:class:`~avbr.adapters.probes.RidgeProbe` over the ``settings.ridge_alphas`` path (one
    eigendecomposition), penalty chosen on val. ``seed`` is unused (the fit is deterministic) but
    kept for the common probe signature."""
    del seed
    probe = RidgeProbe(lambdas=list(settings.ridge_alphas), device=settings.device).fit_path(x_train, y_train)
    scores = [score(y_val, p.cpu().numpy()) for p in probe.predict_path(x_val)]  # float64, as before
    best = 0
    for i, s in enumerate(scores):
        if _improves(s, scores[best]):
            best = i
    probe.select(best)
    return FittedProbe(lambda x: probe.predict(x).cpu().numpy(), {"alpha": probe.lam}, scores[best])


@PROBES.register("mlp")
def fit_mlp(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    settings: ProbeSettings, score: ScoreFn, seed: int = 0,
) -> FittedProbe:
    """:class:`~avbr.adapters.probes.MLPProbe` with one hidden layer (``F -> hidden -> A``).

    One MLP per weight decay of ``settings.mlp_weight_decays``; the (weight decay, epoch) with the
    best val score is kept (checkpoint selection on val, never on test).
    """
    best: tuple[float, dict[str, Any], MLPProbe, dict[str, Any]] | None = None
    for wd in settings.mlp_weight_decays:
        probe = MLPProbe(hidden=settings.mlp_hidden, layers=1, epochs=settings.mlp_epochs, batch_size=settings.mlp_batch_size,
                         lr=settings.mlp_lr, weight_decay=wd, seed=seed, device=settings.device)
        for epoch in probe.train_epochs(x_train, y_train):
            if epoch % settings.mlp_eval_every and epoch != settings.mlp_epochs:
                continue
            s = score(y_val, probe.predict(x_val).cpu().numpy())
            if best is None or _improves(s, best[0]):
                best = (s, {"weight_decay": wd, "epoch": epoch}, probe,
                        {k: v.clone() for k, v in probe.net.state_dict().items()})
    assert best is not None
    s_best, hp, probe, state = best
    probe.net.load_state_dict(state)
    return FittedProbe(lambda x: probe.predict(x).cpu().numpy(), hp, s_best)


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
