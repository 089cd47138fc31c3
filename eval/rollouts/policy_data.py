"""Demonstrations for policy heads: find the demo files of a suite, encode them, cache the features.

Demos are a :class:`~avbr.eval.rollouts.demo_sets.DemoSet` per task: a LeRobotDataset's episodes
of the task (``demos.lerobot``, see :mod:`avbr.eval.rollouts.demo_sets`), or LIBERO-layout hdf5
files read through :class:`avbr.envs.demos.DemoFile` (step alignment, no-op filtering and the
image convention are documented there): the official LIBERO datasets
(``<dir>/<suite>/<task name>_demo.hdf5``) or ``python -m avbr.envs.make_demos`` output, which
uses the same names. A task's file is ``<task name>_demo.hdf5``, or else a file whose
``problem_info`` language instruction is the task's (so renamed files still work; LIBERO's BDDL
instruction can differ from the benchmark's task language, hence the name first). A chosen file
whose own ``problem_info``/BDDL names another suite or task is refused; files of tasks that are
not evaluated are never opened when the names suffice, and an unreadable one never blocks a run.

Each demo step ``t`` becomes one training sample: the frozen features of the pair
``(o_{t-k}, o_t)`` (``o_{max(t-k, 0)}`` near the start, the same rule the rollout policy uses),
the 8-D proprio ``[ee_states (6), gripper_states (2)]`` (the layout of
:func:`avbr.envs.observations.proprio_state`) and the action.

Encoding is the heavy part, so each demo file's arrays are kept in the project's feature cache
(:class:`avbr.adapters.cache.FeatureCache`, one entry per file). The key
(:func:`avbr.adapters.cache.cache_key`) covers the encoder weights (sha256 of the state dict), its
input contract and adapter settings, the encoder config, the readout, cameras, gap ``k``, the demo
file's bytes and how many of its demos are used: a changed input never reuses stale features.

Letters: ``T`` demo steps, ``D`` feature width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbr.cli import UserError
from avbr.adapters.cache import FeatureCache, cache_key

from avbr.envs.config import TaskInfo
from avbr.envs.demos import CAMERAS, DemoFile, DemoFileError, DemoReadOptions, check_task
from avbr.eval.features import encode_readouts
from avbr.eval.rollouts.demo_sets import DemoSet
from avbr.eval.rollouts.policies import DemoArrays

#: The camera names of rollout observations and the matching demo-file datasets.
CAMERA_KEYS = CAMERAS


class DemosNotFoundError(UserError, FileNotFoundError):
    """Demo files for some evaluated tasks are missing; the message says how to get them."""


@dataclass
class DemoConfig:
    """Schema of the ``demos`` node of ``configs/libero.yaml``.

    Attributes:
        dir: folder holding ``<suite>/<task>_demo.hdf5`` (official LIBERO datasets or
            ``make_demos`` output with ``out=<dir>``).
        lerobot: a LeRobotDataset (v2.0/v2.1/v3.0 folder, or a hub id already in the HF hub
            cache) to read the demos from instead of ``dir``'s hdf5 files: a task's demos are the
            episodes whose task text is its instruction (:mod:`avbr.eval.rollouts.demo_sets`).
            ``make_demos format=lerobot`` writes one as ``<out>/<suite>/lerobot``.
        lerobot_keys: the dataset's key map (:data:`avbr.data.lerobot.KEY_MAPS`:
            ``lerobot_libero`` for LeRobot's conversions and ``make_demos``, ``openpi_libero``
            for openpi's).
        max_per_task: use at most this many demos per task (``None`` = all), in file order.
        cache_dir: feature cache folder (``None`` disables the cache); the same folder as the
            feature tool's (``avbr.adapters.features``) by default.
        drop_noops: drop OpenVLA's no-op steps (:mod:`avbr.envs.demos`), as OpenVLA and openpi
            train.
        alignment: ``auto`` (recorded in / detected from the file) or an
            :data:`avbr.envs.demos.ALIGNMENTS` name to override it.
        generate: ``auto``: tasks without a demo file get scripted demos from held-out scenes,
            written into ``dir`` (hdf5 only; suites with a scripted expert;
            :mod:`avbr.eval.rollouts.demo_supply`); ``never``: stop with instructions instead.
        generate_per_task: scripted episodes attempted per task when generating.
        allow_eval_scenes: run even when demos start from the evaluation's own init states
            (:mod:`avbr.eval.rollouts.heldout`; ``results.json`` records the overlap either way).
    """

    dir: str = "data/demos"
    lerobot: str | None = None
    lerobot_keys: str = "lerobot_libero"
    max_per_task: int | None = None
    cache_dir: str | None = "~/.cache/avbr/features"
    drop_noops: bool = True
    alignment: str = "auto"
    generate: str = "auto"
    generate_per_task: int = 50
    allow_eval_scenes: bool = False

    def __post_init__(self) -> None:
        if self.max_per_task is not None and self.max_per_task < 1:
            raise ValueError(f"demos.max_per_task must be >= 1 or null, got {self.max_per_task}")
        if self.generate not in ("auto", "never"):
            raise ValueError(f"demos.generate must be auto or never, got {self.generate!r}")
        if self.generate_per_task < 1:
            raise ValueError(f"demos.generate_per_task must be >= 1, got {self.generate_per_task}")
        self.read_options(True)  # validates `alignment`

    def read_options(self, flip_images: bool) -> DemoReadOptions:
        """The reader settings, with the suite's image convention (``suite.flip_images``)."""
        return DemoReadOptions(flip_images=flip_images, drop_noops=self.drop_noops, alignment=self.alignment)


def _language(path: Path) -> str | None:
    """The file's language instruction, lower case; ``None`` when the file cannot be read."""
    try:
        with DemoFile(path) as f:
            return f.info.language.lower()
    except DemoFileError:
        return None


def find_demo_files(cfg: DemoConfig, suite: str, tasks: Sequence[TaskInfo]) -> dict[int, Path]:
    """Map each task id to its demo file under ``<cfg.dir>/<suite>/``, checked.

    Only the files chosen for ``tasks`` must be readable: others are opened (for their language)
    only when a task has no file by name, and an unreadable one is then skipped.

    Raises:
        DemosNotFoundError: naming the missing tasks, with the commands that download the
            official LIBERO demos or generate scripted ones.
        avbr.envs.demos.DemoFileError: a chosen file is unreadable (corrupt, truncated); its
            subclass ``DemoTaskMismatchError``: a chosen file names another suite or task.
    """
    folder = Path(cfg.dir).expanduser() / suite
    files = sorted(folder.glob("*.hdf5")) if folder.is_dir() else []
    by_name = {path.name: path for path in files}
    found: dict[int, Path] = {t.task_id: by_name[f"{t.name}_demo.hdf5"] for t in tasks
                              if f"{t.name}_demo.hdf5" in by_name}
    unreadable: list[Path] = []
    if len(found) < len(tasks):
        by_language: dict[str, Path] = {}
        for path in files:
            if path in found.values():
                continue
            language = _language(path)
            if language is None:
                unreadable.append(path)
            elif language:
                by_language.setdefault(language, path)
        for t in tasks:
            if t.task_id not in found and t.language.strip().lower() in by_language:
                found[t.task_id] = by_language[t.language.strip().lower()]
    for t in tasks:
        if t.task_id in found:
            with DemoFile(found[t.task_id]) as f:
                check_task(f.info, suite, t.name, t.task_id)
    missing = [t for t in tasks if t.task_id not in found]
    if missing:
        ids = ",".join(str(t.task_id) for t in missing)
        official = (f"  - the official LIBERO demos (with network): `python benchmark_scripts/download_libero_datasets.py "
                    f"--datasets {suite}` in a LIBERO checkout, then move the folder {suite}/ into {Path(cfg.dir).expanduser()}\n"
                    if suite.startswith("libero_") else "")
        skipped = (f"({len(unreadable)} unreadable file(s) skipped: {', '.join(p.name for p in unreadable[:3])})\n"
                   if unreadable else "")
        raise DemosNotFoundError(
            f"no demo file for {len(missing)} task(s) of {suite} in {folder} (task ids {ids}: "
            f"{'; '.join(t.language for t in missing[:3])}{' ...' if len(missing) > 3 else ''}).\n{skipped}Get them with:\n"
            f"{official}"
            f"  - scripted demos: `python -m avbr.envs.make_demos suite={suite} n_per_task=50 workers=2 "
            f"out={Path(cfg.dir).expanduser()} 'tasks=[{ids}]'`\n"
            f"or point `demos.dir=` at the folder that holds {suite}/.")
    return found


def pair_indices(length: int, gap: int) -> np.ndarray:
    """Index of the previous frame for each step: ``max(t - gap, 0)``, ``int [T]``."""
    return np.maximum(np.arange(length) - gap, 0)


@dataclass(frozen=True)
class FeatureSpec:
    """What the frozen features are made of (shared by demo encoding and rollouts).

    Attributes:
        readout: name in :data:`avbr.adapters.readouts.READOUTS` giving ``[B, D]`` (or tokens,
            flattened to ``[B, N*D]``).
        cameras: camera names (:data:`CAMERA_KEYS`), features concatenated in this order.
        gap: ``k`` of the ``(o_{t-k}, o_t)`` pair.
    """

    readout: str = "cls"
    cameras: tuple[str, ...] = ("agentview",)
    gap: int = 1

    def __post_init__(self) -> None:
        unknown = [c for c in self.cameras if c not in CAMERA_KEYS]
        if unknown or not self.cameras:
            raise ValueError(f"cameras must be a non-empty subset of {sorted(CAMERA_KEYS)}, got {list(self.cameras)}")
        if self.gap < 1:
            raise ValueError(f"gap k must be >= 1, got {self.gap}")


def encode_frames(encoder: Any, spec: FeatureSpec, prev: dict[str, np.ndarray], curr: dict[str, np.ndarray],
                  batch_size: int = 64) -> np.ndarray:
    """Features of frame pairs for every camera of ``spec``, concatenated: ``float32 [B, D]``.

    Args:
        encoder: an ``avbr.adapters.EncoderAdapter``.
        prev, curr: ``{camera: uint8 [B, H, W, 3]}`` policy frames (``suite.flip_images``).
    """
    parts = []
    for camera in spec.cameras:
        out = encode_readouts(encoder, prev[camera], curr[camera], [spec.readout], batch_size)[spec.readout]
        parts.append(out.reshape(len(out), -1))  # token readouts -> [B, N*D]
    return np.concatenate(parts, axis=1).astype(np.float32)


def load_demos(cfg: DemoConfig, files: Mapping[int, DemoSet], task_order: Sequence[int], encoder: Any,
               encoder_cfg: dict[str, Any], spec: FeatureSpec, camera_size: int,
               batch_size: int = 64, *, flip_images: bool) -> tuple[list[DemoArrays], dict[str, Any]]:
    """Encode every demo of ``files`` (through the cache) into training arrays.

    Args:
        cfg: demo settings.
        files: ``task_id -> demo set`` (:mod:`avbr.eval.rollouts.demo_sets`: an hdf5 file or a
            task of a LeRobotDataset).
        task_order: task ids in one-hot order (``DemoArrays.task_index`` = position here).
        encoder: the frozen ``EncoderAdapter``.
        encoder_cfg: the encoder config (part of the cache key).
        spec: readout, cameras, gap.
        camera_size: the rollout image size; demo images must match it.
        batch_size: frames per encoder forward.
        flip_images: ``suite.flip_images``, the rollouts' image convention; demo frames are
            converted by the same function (:func:`avbr.envs.observations.policy_frames`).

    Returns:
        ``(demos, info)``: one :class:`DemoArrays` per demo; ``info`` counts demos, steps and
        cache hits per task.
    """
    cache = FeatureCache(cfg.cache_dir) if cfg.cache_dir else None
    options = cfg.read_options(flip_images)
    demos: list[DemoArrays] = []
    info: dict[str, Any] = {"tasks": {}, "cache_hits": 0, "encoded_files": 0}
    for task_id in task_order:
        demo_set = files[task_id]
        count = min(demo_set.count(), cfg.max_per_task or demo_set.count())
        key = hit = None
        if cache is not None:
            key = cache_key(encoder, f"{demo_set.digest()}:{demo_set.label}:{count}", spec.readout,
                            cameras=list(spec.cameras), gap=spec.gap, encoder_cfg=encoder_cfg,
                            reading=options.describe(), arrays="policy_demos")
            hit = cache.load(key)
        if hit is not None:
            arrays = {k: v.numpy() for k, v in hit[0].items()}
            info["cache_hits"] += 1
        else:
            arrays = _encode_set(demo_set, count, options, encoder, spec, camera_size, batch_size)
            info["encoded_files"] += 1
            if cache is not None:
                cache.save(key, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                           {"file": str(demo_set.path), "demos": count, "key": key})
        ends = np.cumsum(arrays["lengths"])
        for i in range(count):
            lo, hi = (ends[i - 1] if i else 0), ends[i]
            demos.append(DemoArrays(task_index=task_order.index(task_id), features=arrays["features"][lo:hi],
                                    state=arrays["state"][lo:hi], actions=arrays["actions"][lo:hi]))
        info["tasks"][str(task_id)] = {"file": demo_set.label, "demos": count,
                                      "steps": int(ends[count - 1]) if count else 0}
    return demos, info


def _encode_set(demo_set: DemoSet, count: int, options: DemoReadOptions, encoder: Any, spec: FeatureSpec,
                camera_size: int, batch_size: int) -> dict[str, np.ndarray]:
    """The first ``count`` demos of one set: ``features [sum T, D]``, ``state [sum T, 8]``,
    ``actions [sum T, 7]``, ``lengths [count]``."""
    feats, states, actions, lengths = [], [], [], []
    for demo in demo_set.read(options, tuple(spec.cameras), limit=count):
        where = f"{demo_set.path}:{demo.key}"
        if demo.state is None or demo.state.shape[1:] != (8,):
            raise DemoFileError(demo_set.path, f"{demo.key} has no 8-D proprio state (LIBERO ee_states + "
                                               "gripper_states, robomimic robot0_eef_pos/quat + robot0_gripper_qpos, "
                                               "or a LeRobot 8-D state feature)")
        for camera, video in demo.images.items():
            if video.shape[1:] != (camera_size, camera_size, 3):
                raise ValueError(f"{where} {camera} frames are {video.shape[1:]}, but rollouts render "
                                 f"{camera_size}x{camera_size}; set suite.camera_size={video.shape[1]} or "
                                 f"regenerate the demos with that camera size")
        prev_idx = pair_indices(len(demo.actions), spec.gap)
        feats.append(encode_frames(encoder, spec, {c: v[prev_idx] for c, v in demo.images.items()}, demo.images,
                                   batch_size))
        states.append(demo.state.astype(np.float32))
        actions.append(demo.actions.astype(np.float32))
        lengths.append(len(demo.actions))
    return {"features": np.concatenate(feats), "state": np.concatenate(states),
            "actions": np.concatenate(actions), "lengths": np.asarray(lengths)}
