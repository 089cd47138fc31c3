"""Action probing (seed 001, phase 2): frozen features -> robot actions, split by trajectory.

Two inputs per sample ``(o_t, o_{t+k}, a_t)``:

- ``pair``: features of ``(o_t, o_{t+k})`` -> ``a_t`` (inverse dynamics). Two-frame encoders see the
  pair; one-frame encoders need ``encoder.frames=both`` (features of both frames concatenated).
- ``single``: features of ``o_t`` alone -> ``a_t`` (behaviour cloning from one frame). Two-frame
  encoders get the still input (``prev=None``: ``M = 0``).

Each input is probed by every probe of ``probes`` (``ridge``, ``mlp``; see ``avbr.eval.probing.protocol``)
for every seed of ``split.seeds``: split the trajectories, fit on train, select on val, report test.
Metrics: R^2 per action dimension, MSE, gripper accuracy (both actions binarised at
``gripper_threshold``; by default the midpoint of the *training* gripper range).

The config schema is :class:`ActionProbeConfig` (Hydra app ``eval/bridge_probe.py``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from avbr.adapters import EncoderConfig, build_encoder
from avbr.adapters.probes import midpoint_threshold, regression_metrics
from avbr.eval.probing.action_data import load_pairs
from avbr.eval.features import encode_readouts, load_feature_file, save_feature_file
from avbr.progress import finish, progress_bar
from avbr.eval.probing.protocol import ProbeSettings, evaluate_probe

__all__ = ["DataConfig", "SplitConfig", "EncoderSpec", "ActionProbeConfig", "build_adapter", "compute_features",
           "run_action_probe", "action_report"]

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Which frame pairs to probe on.

    Attributes:
        source: ``avbr.data`` source registry name with actions: ``bridge`` (Bridge V2 raw layout)
            or ``hdf5_demos`` (LIBERO / robomimic hdf5). See ``avbr.eval.probing.action_data``.
        root: folder of the data (required unless ``features`` is given).
        source_kwargs: extra keyword arguments of the source (``camera``, ``flip_images``, ``drop_noops``).
        gap: ``k`` in frames between ``o_t`` and ``o_{t+k}`` (>= 1).
        stride: step between the ``t`` of consecutive pairs of one trajectory.
        max_episodes: first ``n`` trajectories (sorted ids); null = all.
        max_pairs_per_episode: evenly spaced pairs per trajectory; null = all.
        image_size: frames are resized (short side) and centre-cropped to this side before the
            encoder (which then applies its own resize/normalisation); null keeps them as read.
    """

    source: str = "bridge"
    root: str = ""
    source_kwargs: dict[str, Any] = field(default_factory=dict)
    gap: int = 1
    stride: int = 1
    max_episodes: int | None = None
    max_pairs_per_episode: int | None = None
    image_size: int | None = 224

    def __post_init__(self) -> None:
        if self.gap < 1 or self.stride < 1:
            raise ValueError(f"data.gap and data.stride must be >= 1, got {self.gap}, {self.stride}")


@dataclass
class SplitConfig:
    """Split by trajectory.

    Attributes:
        fractions: shares of the trajectories in train, val, test.
        seeds: one split (and probe initialisation) per seed; results are mean +- std over seeds.
    """

    fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class EncoderSpec(EncoderConfig):
    """The ``encoder`` node: ``avbr.adapters.EncoderConfig`` (which validates and documents each
    field) with defaults for probing: random-init DINOv2-S on both frames, on CPU."""

    arch: str = "small"
    frames: str = "both"
    device: str = "cpu"


@dataclass
class ActionProbeConfig:
    """Schema of ``configs/bridge_probe.yaml``.

    Attributes:
        data: the frame pairs (ignored when ``features`` is given).
        encoder: fields of ``avbr.adapters.EncoderConfig`` (``name``, ``source`` (null = random
            init), ``arch``, ``img_size``, ``frames``, ``device``, ``model_kwargs``).
        features: path of a precomputed-feature ``.npz`` (``avbr.eval.features``); when set, no
            data is read and no encoder is built.
        save_features: write the computed features to this ``.npz`` (reuse them with ``features``).
        inputs: which inputs to probe: ``pair`` (inverse dynamics) and/or ``single``.
        readout: feature readout (``avbr.adapters.readouts``: cls, mean, agg_a ...), ``cls`` by default.
        probes: probe registry names (``ridge``, ``mlp``).
        probe: hyper-parameter grids (selected on val).
        split: trajectory split and seeds.
        gripper_dim: index of the gripper dimension (-1 = last); null skips gripper accuracy.
        gripper_threshold: open/closed threshold; null = midpoint of the training gripper range.
        batch_size: frames per encoder forward pass.
        output_dir: where config.yaml, results.json, report.md go; null = Hydra's run directory.
    """

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    features: str | None = None
    save_features: str | None = None
    inputs: list[str] = field(default_factory=lambda: ["pair", "single"])
    readout: str = "cls"
    probes: list[str] = field(default_factory=lambda: ["ridge", "mlp"])
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    split: SplitConfig = field(default_factory=SplitConfig)
    gripper_dim: int | None = -1
    gripper_threshold: float | None = None
    batch_size: int = 32
    output_dir: str | None = None

    def __post_init__(self) -> None:
        bad = set(self.inputs) - {"pair", "single"}
        if bad or not self.inputs:
            raise ValueError(f"inputs must be a non-empty subset of ['pair', 'single'], got {self.inputs}")
        if not self.features and not self.data.root:
            raise ValueError("set data.root (a Bridge V2 raw tree or a folder of LIBERO hdf5) or features=<file.npz>")


def build_adapter(encoder: EncoderSpec):
    """``avbr.adapters.build_encoder`` from the ``encoder`` config node."""
    return build_encoder(EncoderConfig(**{**asdict(encoder), "model_kwargs": dict(encoder.model_kwargs)}))


def compute_features(cfg: ActionProbeConfig) -> dict[str, np.ndarray]:
    """Read the pairs and encode them: ``{"pair", "single", "action", "episode", "task"}``."""
    d = cfg.data
    pairs = load_pairs(d.source, d.root, d.gap, d.stride, d.max_episodes, d.max_pairs_per_episode,
                       d.image_size, **dict(d.source_kwargs))
    log.info("read %d pairs from %d trajectories", len(pairs), len(np.unique(pairs.episode)))
    adapter = build_adapter(cfg.encoder)
    out: dict[str, np.ndarray] = {"action": pairs.action, "episode": pairs.episode, "task": pairs.task}
    if "pair" in cfg.inputs:
        out["pair"] = encode_readouts(adapter, pairs.prev, pairs.curr, [cfg.readout], cfg.batch_size)[cfg.readout]
    if "single" in cfg.inputs:
        # one frame: two-frame encoders take prev=None (M = 0); "both" encoders see o_t twice
        prev = pairs.prev if getattr(adapter, "frames", "curr") == "both" else None
        out["single"] = encode_readouts(adapter, prev, pairs.prev, [cfg.readout], cfg.batch_size)[cfg.readout]
    return out


def run_action_probe(cfg: ActionProbeConfig, features: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Probe every input with every probe over the seeds; returns the ``results`` of the record."""
    if features is None:
        features = load_feature_file(cfg.features) if cfg.features else compute_features(cfg)
        if cfg.save_features and not cfg.features:
            save_feature_file(cfg.save_features, **features)
    action = np.asarray(features["action"], np.float32)
    groups = np.asarray(features["episode"]).astype(str)
    gdim = cfg.gripper_dim

    def metrics(y: np.ndarray, yhat: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
        thr = cfg.gripper_threshold
        if gdim is not None and thr is None:
            thr = midpoint_threshold(y_train[:, gdim])  # the rule the probes store as gripper_threshold
        return regression_metrics(y, yhat, gdim, thr if thr is not None else 0.0)

    results: dict[str, Any] = {
        "n_samples": int(len(action)), "n_trajectories": int(len(np.unique(groups))),
        "action_dim": int(action.shape[1]), "inputs": {},
    }
    bar = progress_bar(total=len(cfg.inputs) * len(cfg.probes), desc="action probes", unit="probe")
    for inp in cfg.inputs:
        if inp not in features:
            raise ValueError(f"input {inp!r} requested but the features have only {sorted(features)}")
        x = np.asarray(features[inp], np.float32)
        results["inputs"][inp] = {"feature_dim": int(x.shape[1]), "probes": {}}
        for probe in cfg.probes:
            log.info("probing %s with %s over seeds %s", inp, probe, list(cfg.split.seeds))
            results["inputs"][inp]["probes"][probe] = evaluate_probe(
                probe, x, action, groups, list(cfg.split.seeds), metrics, cfg.probe,
                fractions=tuple(cfg.split.fractions),
            )
            bar.update(1)
    finish(bar, f"{len(cfg.inputs)} inputs x {len(cfg.probes)} probes over {len(cfg.split.seeds)} seeds")
    return results


def _pm(s: dict | None, digits: int = 3) -> str:
    return "n/a" if s is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def action_report(results: dict[str, Any], title: str) -> str:
    """Markdown report section of one action-probe run."""
    lines = [
        f"## Action probing: {title}", "",
        f"{results['n_samples']} pairs from {results['n_trajectories']} trajectories, action dim "
        f"{results['action_dim']}; split by trajectory, mean ± std over seeds; probes selected on val, "
        "reported on test.", "",
        "| input | probe | R² (mean over dims) | MSE | gripper acc. |", "|---|---|---|---|---|",
    ]
    for inp, r in results["inputs"].items():
        for probe, pr in r["probes"].items():
            s = pr["summary"]
            lines.append(f"| {inp} | {probe} | {_pm(s['r2_mean'])} | {_pm(s['mse'], 4)} | {_pm(s['gripper_accuracy'])} |")
    lines += ["", "R² per action dimension (mean over seeds; n/a = constant in test):", "",
              "| input | probe | " + " | ".join(f"a{i}" for i in range(results["action_dim"])) + " |",
              "|---|---|" + "---|" * results["action_dim"]]
    for inp, r in results["inputs"].items():
        for probe, pr in r["probes"].items():
            cells = ["n/a" if c is None else f"{c['mean']:.3f}" for c in pr["summary"]["r2_per_dim"]]
            lines.append(f"| {inp} | {probe} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
