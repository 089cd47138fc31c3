"""Config schema, runner and markdown report of the representation-probe app (``eval/probes.py``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avbr.data.base import list_files
from avbr.eval.probing.action_data import load_pairs
from avbr.eval.probing.action_probe import EncoderSpec, SplitConfig, build_adapter
from avbr.eval.probing.protocol import ProbeSettings
from avbr.eval.probing.rep_probes import PROBE_TASKS, FlowConfig, ProbeContext
from avbr.eval.probing.spatial import ObjectTracks, demo_object_tracks
from avbr.progress import finish, progress_bar

__all__ = ["DemoDataConfig", "ProbesConfig", "load_tracks", "run_probes", "probes_report"]

log = logging.getLogger(__name__)

_DEMO_TASKS = {"temporal_order", "clustering", "spatial_position", "spatial_relation"}
_SPATIAL_TASKS = {"spatial_position", "spatial_relation"}


@dataclass
class DemoDataConfig:
    """Demo pairs ``(o_t, o_{t+k})`` for the demo-based tasks.

    Attributes:
        root: the demos: a folder of LIBERO-layout demo files (``python -m avbr.envs.make_demos``)
            for ``source: hdf5_demos``; for another source its root (``lerobot``: a LeRobotDataset
            folder or cached hub id). The spatial tasks replay simulator states, so they need
            ``hdf5_demos`` files written by make_demos.
        source: the ``avbr.data`` source the pairs are read with (``hdf5_demos``, ``lerobot``, ...).
        kwargs: more arguments of that source (``lerobot``: ``keys``, ``camera``).
        gap: ``k`` in frames.
        stride: step between pairs of one demo.
        max_episodes: first ``n`` demos (sorted ids); null = all.
        max_pairs_per_episode: evenly spaced pairs per demo; null = all.
        image_size: resize + centre-crop frames to this side before the encoder; null keeps them.
        assets_dir: LIBERO asset folder for the replay (``SuiteConfig.assets_dir``); null searches
            ``$AVBR_LIBERO_ASSETS`` and the libero package.
    """

    root: str = ""
    source: str = "hdf5_demos"
    kwargs: dict[str, Any] = field(default_factory=dict)
    gap: int = 4
    stride: int = 4
    max_episodes: int | None = None
    max_pairs_per_episode: int | None = 25
    image_size: int | None = None
    assets_dir: str | None = None


def _default_encoders() -> dict[str, EncoderSpec]:
    return {
        "two_stream_random": EncoderSpec(name="two_stream", source=None, arch="tiny", frames="curr"),
        "dinov2_random": EncoderSpec(name="dinov2_hf", source=None, arch="small", frames="both"),
        "r3m_random": EncoderSpec(name="r3m", source=None, arch="resnet18", frames="both"),
    }


@dataclass
class ProbesConfig:
    """Schema of ``configs/probes.yaml``.

    Attributes:
        encoders: ``{label: encoder node}`` (the fields of :class:`avbr.eval.probing.action_probe.EncoderSpec`);
            every task runs for every encoder. One-frame encoders use ``frames: both`` so that they
            see the pair. Add one with ``+encoders.<label>={name: clip, source: null, ...}``, drop
            one with ``~encoders.<label>``.
        flow_reference: label of the encoder the flow EPE is compared with (seed 001: 20 % lower
            EPE than DINOv2).
        tasks: probe tasks (``avbr.eval.probing.rep_probes.PROBE_TASKS``).
        data: the demo pairs.
        flow: synthetic flow sequences.
        spatial_readouts: readouts compared by the spatial tasks (``avbr.adapters.readouts``):
            ``pixelwise`` (C) against ``agg_a`` (A, avg + late) and ``agg_b`` (B, avg + early), plus
            ``cls``, ``mean`` and ``agg_d``. A readout an encoder cannot give is reported as skipped.
        probes: probe names for the supervised demo tasks (``ridge``, ``mlp``); flow uses ridge.
        probe: probe grids (selected on val).
        split: trajectory split and seeds.
        tsne_perplexity: t-SNE perplexity (capped by the sample count).
        batch_size: frames per forward pass.
        output_dir: output folder; null = Hydra's run directory.
    """

    encoders: dict[str, Any] = field(default_factory=_default_encoders)
    flow_reference: str | None = "dinov2_random"
    tasks: list[str] = field(default_factory=lambda: ["temporal_order", "flow", "clustering", "spatial_position", "spatial_relation"])
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    spatial_readouts: list[str] = field(default_factory=lambda: ["cls", "mean", "agg_a", "agg_b", "pixelwise", "agg_d"])
    probes: list[str] = field(default_factory=lambda: ["ridge"])
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    split: SplitConfig = field(default_factory=SplitConfig)
    tsne_perplexity: float = 30.0
    batch_size: int = 16
    output_dir: str | None = None

    def __post_init__(self) -> None:
        self.encoders = {k: v if isinstance(v, EncoderSpec) else EncoderSpec(**v) for k, v in self.encoders.items()}
        for t in self.tasks:
            PROBE_TASKS.get(t)  # unknown names raise with the valid ones
        if not self.encoders:
            raise ValueError("encoders is empty: give at least one {label: {name: ...}}")
        if set(self.tasks) & _DEMO_TASKS and not self.data.root:
            raise ValueError(f"tasks {sorted(set(self.tasks) & _DEMO_TASKS)} need demo files: set data.root "
                             "(e.g. the output of python -m avbr.envs.make_demos), or run only tasks=[flow]")
        spatial = sorted(set(self.tasks) & _SPATIAL_TASKS)
        if spatial and self.data.source != "hdf5_demos":
            raise ValueError(f"tasks {spatial} replay simulator states, which only hdf5_demos files written by "
                             f"make_demos hold, not data.source={self.data.source!r}: drop them "
                             "(tasks=[temporal_order,flow,clustering]) or use data.source=hdf5_demos")


def load_tracks(root: str, assets_dir: str | None) -> dict[str, ObjectTracks]:
    """Simulator tracks of every demo under ``root``, keyed like the pair episode ids (``<file>:demo_i``)."""
    out = {}
    for path in list_files(Path(root), {".hdf5", ".h5"}):
        rel = os.path.relpath(path, root)
        for key, tr in demo_object_tracks(path, assets_dir).items():
            out[f"{rel}:{key}"] = tr
    return out


def run_probes(cfg: ProbesConfig, out_dir: str | Path) -> dict[str, Any]:
    """Every task for every encoder; returns ``{"data": ..., "encoders": {label: {task: result}}}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    pairs = tracks = None
    info: dict[str, Any] = {}
    if set(cfg.tasks) & _DEMO_TASKS:
        pairs = load_pairs(d.source, d.root, d.gap, d.stride, d.max_episodes, d.max_pairs_per_episode, d.image_size,
                           **d.kwargs)
        info = {"n_pairs": len(pairs), "n_episodes": int(len(set(pairs.episode))), "tasks": sorted(set(pairs.task)),
                "gap": d.gap, "frame_shape": list(pairs.prev.shape[1:])}
        log.info("demo pairs: %s", info)
    if set(cfg.tasks) & _SPATIAL_TASKS:
        tracks = load_tracks(d.root, d.assets_dir)
    results: dict[str, Any] = {"data": info, "encoders": {}}
    bar = progress_bar(total=len(cfg.encoders) * len(cfg.tasks), desc="probes", unit="probe")
    for label, spec in cfg.encoders.items():
        adapter = build_adapter(spec)
        ctx = ProbeContext(label=label, adapter=adapter, pairs=pairs, tracks=tracks, probes=list(cfg.probes),
                           settings=cfg.probe, seeds=list(cfg.split.seeds), fractions=tuple(cfg.split.fractions),
                           flow=cfg.flow, spatial_readouts=list(cfg.spatial_readouts),
                           tsne_perplexity=cfg.tsne_perplexity, batch_size=cfg.batch_size, out_dir=out_dir)
        results["encoders"][label] = {"encoder": spec.name, "feature_dim": int(adapter.feature_dim)}
        for task in cfg.tasks:
            log.info("%s: %s", label, task)
            bar.set_postfix_str(f"{label}: {task}")
            results["encoders"][label][task] = PROBE_TASKS.get(task)(ctx)
            bar.update(1)
    finish(bar, f"{len(cfg.tasks)} tasks x {len(cfg.encoders)} encoders")
    return results


def _pm(s: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    return "n/a" if not s else f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"


def probes_report(results: dict[str, Any], cfg: ProbesConfig) -> str:
    """Markdown report section: one table per task, mean ± std over split seeds."""
    enc = results["encoders"]
    lines = ["## Representation probes", ""]
    if results["data"]:
        dd = results["data"]
        lines += [f"Demo pairs: {dd['n_pairs']} pairs (gap k={dd['gap']}) from {dd['n_episodes']} demos of "
                  f"{len(dd['tasks'])} tasks; split by demo, seeds {list(cfg.split.seeds)}; probes selected on val, "
                  "reported on test (mean ± std over seeds).", ""]
    if "temporal_order" in cfg.tasks:
        lines += ["### Temporal order (seed 001 goal: > 90 %)", "", "| encoder | probe | test accuracy |", "|---|---|---|"]
        for label, r in enc.items():
            for probe, s in r["temporal_order"]["probes"].items():
                lines.append(f"| {label} | {probe} | {_pm(s['accuracy'])} |")
        lines.append("")
    if "flow" in cfg.tasks:
        ref = enc.get(cfg.flow_reference, {}).get("flow") if cfg.flow_reference else None
        lines += ["### Optical flow (synthetic sequences; seed 001 goal: EPE 20 % below DINOv2)", "",
                  "| encoder | grid | EPE (px) | vs reference | zero-flow EPE | mean-flow EPE | oracle cells EPE | plot |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, r in enc.items():
            f = r["flow"]
            s = f["summary"]
            rel = "" if ref is None else f"{100 * (s['epe']['mean'] / ref['summary']['epe']['mean'] - 1):+.1f} %"
            lines.append(f"| {label} | {f['grid'][0]}x{f['grid'][1]} | {_pm(s['epe'], 2)} | {rel} | "
                         f"{_pm(s['epe_zero_flow'], 2)} | {_pm(s['epe_mean_flow'], 2)} | {_pm(s['epe_oracle_cells'], 2)} | "
                         f"[{f['plot']}]({f['plot']}) |")
        lines.append("")
    if "clustering" in cfg.tasks:
        lines += ["### Action clustering (t-SNE of CLS by task)", "", "| encoder | silhouette (cosine) | plot |", "|---|---|---|"]
        for label, r in enc.items():
            c = r["clustering"]
            lines.append(f"| {label} | {c['silhouette_cosine']:.3f} | [{c['plot']}]({c['plot']}) |")
        lines.append("")
    for task, title, key, digits, scale in (
        ("spatial_position", "Spatial position: object xy error in cm (lower is better)", "error_cm", 2, 1.0),
        ("spatial_relation", "Spatial relation: 'A left of B' test accuracy", "accuracy", 3, 1.0),
    ):
        if task not in cfg.tasks:
            continue
        first = next(iter(enc.values()))[task]
        extra = (f"objects: {', '.join(first['objects'])}" if task == "spatial_position"
                 else f"{len(first['pairs'])} object pairs; majority-class baseline {first['majority_baseline']:.3f}")
        lines += [f"### {title}", "", extra, "", "| encoder | readout | dim | " + " | ".join(cfg.probes) + " |",
                  "|---|---|---|" + "---|" * len(cfg.probes)]
        for label, r in enc.items():
            for readout, rr in r[task]["readouts"].items():
                if "skipped" in rr:
                    lines.append(f"| {label} | {readout} | - | " + " | ".join("n/a (readout does not apply)" for _ in cfg.probes) + " |")
                    continue
                cells = [_pm(rr[p][key], digits, scale) for p in cfg.probes]
                lines.append(f"| {label} | {readout} | {rr['feature_dim']} | " + " | ".join(cells) + " |")
        if task == "spatial_position":
            base = [rr[p]["error_cm_mean_baseline"] for r in enc.values() for rr in r[task]["readouts"].values()
                    if "skipped" not in rr for p in cfg.probes]
            if base:
                lines += ["", f"Predicting the training mean gives {np.mean([b['mean'] for b in base]):.2f} cm."]
        lines.append("")
    return "\n".join(lines) + "\n"
