"""The representation probes of seeds 001 and 002, registered by name in ``PROBE_TASKS``.

Each task takes a :class:`ProbeContext` (one encoder, the shared demo pairs, the config) and
returns a JSON-able dict; plots go to ``ctx.out_dir``. Every supervised probe splits by trajectory
(``avbr.eval.probing.splits``), selects on val and reports test, mean +- std over ``split.seeds``.

- ``temporal_order`` (seed 001, goal > 90 %): features of ``(o_t, o_{t+k})`` (label +1) and of
  ``(o_{t+k}, o_t)`` (label -1) from the demos; a probe on the ``cls`` readout classifies the order.
- ``flow`` (seed 001, goal: EPE 20 % below DINOv2): dense probe from patch tokens on synthetic
  sequences with known motion (``avbr.eval.probing.flow``); test EPE in pixels, error-map plot.
- ``clustering`` (seed 001): t-SNE of the ``cls`` embeddings of the demo pairs coloured by task,
  and the silhouette score (cosine) of the task labels.
- ``spatial_position`` (seed 002): the objects' world ``(x, y)`` at ``o_{t+k}`` from the pair
  features, for each readout of ``spatial_readouts`` (pixel-wise vs (A) avg + late vs (B) avg + early
  ...); error in cm.
- ``spatial_relation`` (seed 002): "A left of B" in the image for every object pair whose order
  varies, for each readout; accuracy.

Letters: ``M`` pairs, ``K`` objects, ``P`` object pairs, ``F`` feature width.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avbr.adapters.probes import mean_r2, sign_accuracy
from avbr.eval.probing.action_data import PairSet
from avbr.eval.features import TOKENS, encode_readouts, readout_applies
from avbr.eval.probing.flow import FlowSet, cell_targets, cells_to_pixels, epe, plot_flow_errors, synthetic_sequences
from avbr.eval.probing.protocol import ProbeSettings, evaluate_probe, fit_probe, summarise_seeds
from avbr.eval.probing.spatial import ObjectTracks, relation_labels
from avbr.eval.probing.splits import check_no_leakage, split_by_group
from avbr.registry import Registry

__all__ = ["FlowConfig", "ProbeContext", "PROBE_TASKS", "probe_task_names", "fit_flow_probe"]

log = logging.getLogger(__name__)


@dataclass
class FlowConfig:
    """Synthetic flow sequences and the dense probe.

    Attributes:
        n_sequences: sequences (the split unit); each gives ``frames - 1`` pairs.
        frames: frames per sequence.
        n_objects: moving rectangles per sequence.
        max_speed: largest per-frame displacement per axis (pixels of the encoder input).
        sub: flow sub-cells per patch side predicted by each token (``2 * sub^2`` outputs).
        seed: generator seed.
        n_plot: test pairs shown in the error-map plot.
    """

    n_sequences: int = 40
    frames: int = 3
    n_objects: int = 3
    max_speed: int = 6
    sub: int = 2
    seed: int = 0
    n_plot: int = 3


@dataclass
class ProbeContext:
    """What a probe task gets.

    Attributes:
        label: the encoder's label in the config (used in file names).
        adapter: the built ``avbr.adapters.EncoderAdapter``.
        pairs: demo pairs ``(o_t, o_{t+k})`` with episode and task ids.
        tracks: ``{episode id: ObjectTracks}`` for the demos (spatial tasks), or None.
        probes: probe names for the supervised tasks.
        settings: probe grids.
        seeds: split seeds.
        fractions: train/val/test shares of trajectories.
        flow: flow settings.
        spatial_readouts: readouts compared by the spatial tasks.
        tsne_perplexity: t-SNE perplexity.
        batch_size: frames per forward pass.
        out_dir: folder for plots.
    """

    label: str
    adapter: Any
    pairs: PairSet | None
    tracks: dict[str, ObjectTracks] | None
    probes: list[str]
    settings: ProbeSettings
    seeds: list[int]
    fractions: tuple[float, float, float]
    flow: FlowConfig
    spatial_readouts: list[str]
    tsne_perplexity: float
    batch_size: int
    out_dir: Path
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def pair_features(self, readout: str, reverse: bool = False) -> np.ndarray:
        """Readout of ``encode(o_t, o_{t+k})`` (or reversed), ``[M, F]``.

        The first call encodes the pairs once for ``cls`` and every applicable spatial readout.
        """
        key = f"{readout}|{reverse}"
        if key not in self._cache:
            p = self.require_pairs()
            prev, curr = (p.curr, p.prev) if reverse else (p.prev, p.curr)
            names = [readout] if reverse else sorted({readout, "cls", *self.applicable_readouts()})
            for r, x in encode_readouts(self.adapter, prev, curr, names, self.batch_size).items():
                self._cache[f"{r}|{reverse}"] = x
        return self._cache[key]

    def readout_skips(self) -> dict[str, str]:
        """``{readout: reason}`` for the spatial readouts this encoder cannot give."""
        p = self.require_pairs()
        example = self.adapter.encode(p.prev[:2], p.curr[:2])
        return {r: why for r in self.spatial_readouts if (why := readout_applies(r, example)) is not None}

    def applicable_readouts(self) -> list[str]:
        skips = self.readout_skips()
        return [r for r in self.spatial_readouts if r not in skips]

    def require_pairs(self) -> PairSet:
        if self.pairs is None:
            raise ValueError("this probe needs demo pairs: set data.root to a folder of LIBERO-layout demo files")
        return self.pairs


ProbeTask = Callable[[ProbeContext], dict[str, Any]]
PROBE_TASKS: Registry[ProbeTask] = Registry("probe task")


def probe_task_names() -> list[str]:
    return PROBE_TASKS.names()


def _acc_metrics(y: np.ndarray, yhat: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    del y_train
    per = [sign_accuracy(y[:, j], yhat[:, j]) for j in range(y.shape[1])]  # [P]
    return {"accuracy": float(np.mean(per)), "accuracy_per_output": per}


@PROBE_TASKS.register("temporal_order")
def temporal_order(ctx: ProbeContext) -> dict[str, Any]:
    """Is the pair in order or reversed? Both orders of every pair, split by trajectory."""
    p = ctx.require_pairs()
    x = np.concatenate([ctx.pair_features("cls"), ctx.pair_features("cls", reverse=True)])  # [2M, F]
    y = np.concatenate([np.ones(len(p)), -np.ones(len(p))])[:, None]
    groups = np.concatenate([p.episode, p.episode])
    return {"gap": p.gap, "n_pairs": int(len(p)), "chance": 0.5, "probes": {
        probe: evaluate_probe(probe, x, y, groups, ctx.seeds, _acc_metrics, ctx.settings, sign_accuracy, ctx.fractions)["summary"]
        for probe in ctx.probes}}


def fit_flow_probe(
    tokens: np.ndarray, fs: FlowSet, sub: int, seeds: list[int], fractions: tuple[float, float, float],
    settings: ProbeSettings,
) -> tuple[list[dict[str, Any]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Ridge from each patch token to its patch's sub-cell flow, split by sequence, per seed.

    Args:
        tokens: ``[M, N, D]`` patch tokens of the pairs of ``fs`` (square grid, row-major).
        fs: the pairs and their ground-truth flow ``[M, S, S, 2]``.
        sub: sub-cells per patch side.
        seeds, fractions, settings: split seeds, shares and ridge grid (penalty chosen on val EPE).

    Returns:
        per-seed metrics (test EPE, zero-flow / mean-flow / oracle-cell EPE, chosen penalty) and
        ``{seed: (test indices, predicted flow [M_test, S, S, 2])}``.
    """
    m, n, d = tokens.shape
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"flow probe needs a square patch grid, got {n} tokens")
    grid, size = (side, side), fs.flow.shape[1]
    target = cell_targets(fs.flow, grid, sub)  # [M, N, 2 sub^2]

    def flat(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tokens[idx].reshape(-1, d), target[idx].reshape(len(idx) * n, -1)  # [|idx| N, D], [|idx| N, 2 sub^2]

    def neg_epe(y: np.ndarray, yhat: np.ndarray) -> float:
        return -float(np.linalg.norm((y - yhat).reshape(len(y), -1, 2), axis=-1).mean())

    per_seed, preds = [], {}
    for seed in seeds:
        split = split_by_group(fs.sequence, fractions, seed)
        check_no_leakage(fs.sequence, split)
        fitted = fit_probe("ridge", *flat(split.train), *flat(split.val), settings, neg_epe, seed)
        pred = cells_to_pixels(fitted.predict(flat(split.test)[0]).reshape(len(split.test), n, -1), grid, sub, size)
        gt = fs.flow[split.test]
        train_mean = fs.flow[split.train].reshape(-1, 2).mean(0)
        per_seed.append({"epe": float(epe(pred, gt).mean()), "epe_zero_flow": float(np.linalg.norm(gt, axis=-1).mean()),
                         "epe_mean_flow": float(np.linalg.norm(gt - train_mean, axis=-1).mean()),
                         "epe_oracle_cells": float(epe(cells_to_pixels(target[split.test], grid, sub, size), gt).mean()),
                         "alpha": fitted.hparams["alpha"]})
        preds[seed] = (split.test, pred)
    return per_seed, preds


@PROBE_TASKS.register("flow")
def flow(ctx: ProbeContext) -> dict[str, Any]:
    """Dense flow from patch tokens on synthetic sequences (ridge; see ``avbr.eval.probing.flow``)."""
    fc = ctx.flow
    size = int(ctx.adapter.contract.resolution[0])
    fs = synthetic_sequences(fc.n_sequences, size, fc.frames, fc.n_objects, fc.max_speed, fc.seed)
    tokens = encode_readouts(ctx.adapter, fs.prev, fs.curr, [TOKENS], ctx.batch_size)[TOKENS]  # [M, N, D]
    per_seed, preds = fit_flow_probe(tokens, fs, fc.sub, ctx.seeds, ctx.fractions, ctx.settings)
    test, pred = preds[ctx.seeds[0]]
    k = min(fc.n_plot, len(test))
    plot = plot_flow_errors(ctx.out_dir / f"flow_errors_{ctx.label}.png", fs.prev[test][:k], fs.curr[test][:k],
                            fs.flow[test][:k], pred[:k], f"flow probe, {ctx.label} (test pairs)")
    side = int(round(tokens.shape[1] ** 0.5))
    return {"frame_side": size, "grid": [side, side], "n_pairs": int(len(tokens)), "per_seed": per_seed,
            "summary": summarise_seeds([{k: v for k, v in r.items() if k != "alpha"} for r in per_seed]),
            "plot": plot.name}


@PROBE_TASKS.register("clustering")
def clustering(ctx: ProbeContext) -> dict[str, Any]:
    """t-SNE of the ``cls`` embeddings coloured by task, and the silhouette score of the task labels."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from sklearn.manifold import TSNE  # noqa: PLC0415
    from sklearn.metrics import silhouette_score  # noqa: PLC0415

    p = ctx.require_pairs()
    x = ctx.pair_features("cls")
    tasks = np.asarray(p.task)
    uniq = sorted(set(tasks))
    if len(uniq) < 2:
        raise ValueError(f"clustering needs demos of at least 2 tasks, got {uniq}")
    score = float(silhouette_score(x, tasks, metric="cosine"))
    emb = TSNE(n_components=2, perplexity=min(ctx.tsne_perplexity, (len(x) - 1) / 3), init="pca",
               random_state=0).fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for i, t in enumerate(uniq):
        sel = tasks == t
        ax.scatter(emb[sel, 0], emb[sel, 1], s=10, color=plt.cm.tab10(i % 10), label=t[:60])
    ax.set_title(f"t-SNE of CLS, {ctx.label} (silhouette {score:.3f})", fontsize=10)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    path = ctx.out_dir / f"tsne_{ctx.label}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return {"silhouette_cosine": score, "n_pairs": int(len(x)), "n_tasks": len(uniq), "plot": path.name}


def _spatial_targets(ctx: ProbeContext) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Object names common to every demo, and their xy ``[M, K, 2]`` (m) and pixels ``[M, K, 2]`` at ``o_{t+k}``."""
    p = ctx.require_pairs()
    if not ctx.tracks:
        raise ValueError("spatial probes need simulator tracks of the demos (data.root with make_demos files)")
    names = sorted(set.intersection(*(set(ctx.tracks[e].names) for e in set(p.episode))))
    if not names:
        raise ValueError("the demos share no object; spatial probes need one scene layout (one suite)")
    xy, px = [], []
    for ep, t in zip(p.episode, p.t + p.gap):
        tr = ctx.tracks[ep]
        cols = [tr.names.index(n) for n in names]
        xy.append(tr.xyz[t, cols, :2])
        px.append(tr.pixel[t, cols])
    return names, np.stack(xy), np.stack(px)


def _per_readout(ctx: ProbeContext, run: Callable[[np.ndarray], dict[str, Any]]) -> dict[str, Any]:
    skips = ctx.readout_skips()
    out: dict[str, Any] = {}
    for r in ctx.spatial_readouts:
        if r in skips:
            out[r] = {"skipped": skips[r]}
            continue
        x = ctx.pair_features(r)
        out[r] = {"feature_dim": int(x.shape[1]), **run(x)}
    return out


@PROBE_TASKS.register("spatial_position")
def spatial_position(ctx: ProbeContext) -> dict[str, Any]:
    """Objects' world xy from the pair features, per readout; mean error in cm and R^2."""
    p = ctx.require_pairs()
    names, xy, _ = _spatial_targets(ctx)
    y = xy.reshape(len(xy), -1)  # [M, 2K]

    def metrics(yt: np.ndarray, yh: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
        err = np.linalg.norm((yt - yh).reshape(len(yt), -1, 2), axis=-1) * 100.0  # [M, K] cm
        base = np.linalg.norm((yt - y_train.mean(0)).reshape(len(yt), -1, 2), axis=-1) * 100.0
        r2 = mean_r2(yt, yh)
        return {"error_cm": float(err.mean()), "error_cm_mean_baseline": float(base.mean()),
                "r2_mean": r2 if np.isfinite(r2) else None}

    def run(x: np.ndarray) -> dict[str, Any]:
        return {probe: evaluate_probe(probe, x, y, p.episode, ctx.seeds, metrics, ctx.settings,
                                      fractions=ctx.fractions)["summary"] for probe in ctx.probes}

    return {"objects": names, "readouts": _per_readout(ctx, run)}


@PROBE_TASKS.register("spatial_relation")
def spatial_relation(ctx: ProbeContext) -> dict[str, Any]:
    """"A left of B" (upright agentview image) for every object pair whose order varies, per readout."""
    p = ctx.require_pairs()
    names, _, px = _spatial_targets(ctx)
    y, pair_names = relation_labels(px, names)

    def run(x: np.ndarray) -> dict[str, Any]:
        return {probe: evaluate_probe(probe, x, y, p.episode, ctx.seeds, _acc_metrics, ctx.settings, sign_accuracy,
                                      ctx.fractions)["summary"] for probe in ctx.probes}

    return {"pairs": pair_names, "majority_baseline": float(np.maximum((y > 0).mean(0), (y < 0).mean(0)).mean()),
            "readouts": _per_readout(ctx, run)}
