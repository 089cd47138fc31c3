"""One task's demonstrations, wherever they are stored: an hdf5 demo file or a LeRobotDataset.

The evaluation (``eval/libero.py``) needs three things of a task's demos, and a :class:`DemoSet`
gives them the same way for both formats:

- ``digest()``: a hash of the stored bytes (results record it; the feature cache keys on it);
- ``read(options, cameras, limit)``: the demos as :class:`avbr.envs.demos.Demo` (observation ``t``
  the one before ``actions[t]``, policy frames, 8-D proprio, OpenVLA's no-op filter);
- ``starts()``: where each demo started (:class:`DemoStart`), for the held-out check
  (:mod:`avbr.eval.rollouts.heldout`).

**hdf5** (:class:`Hdf5Demos`): LIBERO-layout files read through :class:`avbr.envs.demos.DemoFile`
(the alignment of official and scripted files is documented there).

**LeRobotDataset** (:class:`LeRobotDemos`, ``demos.lerobot=<folder or hub id>``): read through
:class:`avbr.data.lerobot.LeRobotSource` (v2.0/v2.1/v3.0, key maps ``lerobot_libero`` /
``openpi_libero``). A frame row holds the observation and the action taken at it, so rows are
``obs_before_action``; the task's episodes are those whose task text is the benchmark task's
language instruction (case and surrounding spaces ignored). Episodes written by
``make_demos format=lerobot`` record their start (``avbr/init_source``, ``avbr/init_seed``,
``avbr/init_scene_state`` episode columns) and get the full held-out check. Third-party
conversions (LeRobot's ``HuggingFaceVLA/libero``, openpi's ``physical-intelligence/libero``)
store no simulator state: their demos are counted as ``unverified`` in ``results.json`` and the
run prints a warning rather than refusing them (they come from LIBERO's human demos, which
:func:`avbr.eval.rollouts.heldout.check_heldout` can check in their hdf5 form).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from avbr.adapters.cache import file_digest
from avbr.data.base import EpisodeRef
from avbr.data.lerobot import LeRobotSource
from avbr.envs.demos import ALIGNMENTS, Demo, DemoFile, DemoReadOptions, keep_non_noops
from avbr.envs.scenes import EVAL_INIT_STATE

__all__ = ["DemoStart", "DemoSet", "Hdf5Demos", "LeRobotDemos", "LeRobotTaskDemos", "UNRECORDED"]

#: ``DemoStart.source`` of a demo that does not say where it started.
UNRECORDED = "unrecorded"
#: Episode columns of a LeRobotDataset written by ``make_demos`` (:mod:`avbr.data.lerobot_writer`).
START_COLUMNS = ["avbr/init_source", "avbr/init_seed", "avbr/init_scene_state"]


@dataclass(frozen=True)
class DemoStart:
    """Where one demo started.

    Attributes:
        demo: the demo's name (``demo_<i>``, or ``episode_<index>`` in a LeRobotDataset).
        source: ``init_source`` (``heldout_seed`` / ``eval_init_state``), or ``unrecorded``.
        seed: ``init_seed`` (or ``avbr_init_index``), ``None`` when unrecorded.
        state: ``float64 [S]`` flattened MuJoCo state of the first scene (``[0]`` elements when
            the demo stores none: nothing to compare).
    """

    demo: str
    source: str
    seed: int | None
    state: np.ndarray


class DemoSet(Protocol):
    """One task's demonstrations (see the module docstring)."""

    #: Shown in messages and recorded in ``results.json`` (file name, or ``dataset:task``).
    label: str
    #: The file or dataset folder the demos are read from.
    path: Path

    def digest(self) -> str:
        """sha256 of the stored bytes the demos are read from."""

    def count(self) -> int:
        """Number of demos."""

    def read(self, options: DemoReadOptions, cameras: tuple[str, ...], limit: int | None = None) -> list[Demo]:
        """The first ``limit`` demos (all for ``None``), aligned and filtered."""

    def starts(self) -> list[DemoStart]:
        """Where every demo started, in the order of :meth:`read`."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Hdf5Demos:
    """The demos of one LIBERO-layout hdf5 file (:class:`avbr.envs.demos.DemoFile`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.label = self.path.name

    def digest(self) -> str:
        return file_digest(self.path)

    def count(self) -> int:
        with DemoFile(self.path) as f:
            return len(f.info.demos)

    def read(self, options: DemoReadOptions, cameras: tuple[str, ...], limit: int | None = None) -> list[Demo]:
        with DemoFile(self.path) as f:
            return [f.read(key, options, cameras=cameras) for key in list(f.info.demos)[:limit]]

    def starts(self) -> list[DemoStart]:
        """A demo's first scene is its ``init_scene_state`` attribute (written by ``make_demos``),
        else ``states[0]`` (official LIBERO files, older AVBR files); older AVBR files record
        ``avbr_init_index`` (an evaluation init state) instead of ``init_source``/``init_seed``."""
        with DemoFile(self.path) as f:
            keys = list(f.info.demos)
        out = []
        with h5py.File(self.path, "r") as f:
            for key in keys:
                group = f["data"][key]
                attrs = group.attrs
                state = attrs["init_scene_state"] if "init_scene_state" in attrs else group["states"][0]
                if "init_source" in attrs:
                    source, seed = _text(attrs["init_source"]), int(attrs["init_seed"])
                elif "avbr_init_index" in attrs:
                    source, seed = EVAL_INIT_STATE, int(attrs["avbr_init_index"])
                else:
                    source, seed = UNRECORDED, None
                out.append(DemoStart(key, source, seed, np.asarray(state, dtype=np.float64).ravel()))
        return out


class LeRobotDemos:
    """A LeRobotDataset holding demos of many tasks; :meth:`for_task` gives one task's :class:`DemoSet`.

    Args:
        root: dataset folder or a hub id in the HF hub cache (:func:`avbr.data.lerobot.resolve_root`).
        keys: key map name (:data:`avbr.data.lerobot.KEY_MAPS`).
        flip_images: the suite's image convention (``suite.flip_images``).
    """

    def __init__(self, root: str, keys: str = "lerobot_libero", flip_images: bool = True) -> None:
        self.source = LeRobotSource(root, keys=keys, camera="agentview", flip_images=flip_images)
        self.root = self.source.root
        self.keys = keys
        self.flip_images = flip_images
        self._cameras: dict[str, LeRobotSource] = {"agentview": self.source}
        self.by_task: dict[str, list[EpisodeRef]] = {}
        self.texts: dict[str, str] = {}  # lower case -> the task text as stored
        for ref in self.source.episodes():
            _, _, task = self.source.episode_arrays(ref)
            self.by_task.setdefault(task.strip().lower(), []).append(ref)
            self.texts.setdefault(task.strip().lower(), task.strip())
        self._digest: str | None = None

    def tasks(self) -> list[str]:
        """Task texts present, as stored."""
        return sorted(self.texts.values())

    def for_task(self, language: str) -> LeRobotTaskDemos | None:
        """The demos whose task text is ``language`` (``None`` when there are none)."""
        key = language.strip().lower()
        return LeRobotTaskDemos(self, self.texts[key], self.by_task[key]) if key in self.by_task else None

    def camera(self, camera: str) -> LeRobotSource:
        """A reader of ``camera`` (a role of the key map: ``agentview``, ``wrist``)."""
        if camera not in self._cameras:
            self._cameras[camera] = LeRobotSource(str(self.root), keys=self.keys, camera=camera,
                                                  flip_images=self.flip_images)
        return self._cameras[camera]

    def digest(self) -> str:
        """sha256 over every file of the dataset (relative path and bytes), computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                h.update(f"{path.relative_to(self.root)}\0{file_digest(path)}\0".encode())
            self._digest = h.hexdigest()
        return self._digest


class LeRobotTaskDemos:
    """One task's episodes of a :class:`LeRobotDemos` dataset (a :class:`DemoSet`)."""

    def __init__(self, dataset: LeRobotDemos, language: str, refs: list[EpisodeRef]) -> None:
        self.dataset = dataset
        self.refs = refs
        self.label = f"{dataset.root.name}:{language}"
        self.path = dataset.root

    def digest(self) -> str:
        return self.dataset.digest()

    def count(self) -> int:
        return len(self.refs)

    def read(self, options: DemoReadOptions, cameras: tuple[str, ...], limit: int | None = None) -> list[Demo]:
        alignment = "obs_before_action" if options.alignment == "auto" else options.alignment
        out = []
        for ref in self.refs[:limit]:
            state, actions, task = self.dataset.source.episode_arrays(ref)
            obs_rows, act_rows = ALIGNMENTS[alignment](len(actions))
            if options.drop_noops:
                keep = keep_non_noops(actions[act_rows])
                obs_rows, act_rows = obs_rows[keep], act_rows[keep]
            images = {c: np.stack(self.dataset.camera(c).frames(ref, obs_rows.tolist())) if len(obs_rows)
                      else np.zeros((0, 0, 0, 3), np.uint8) for c in cameras}
            out.append(Demo(key=ref.key, images=images, state=state[obs_rows], obs={},
                            actions=actions[act_rows].astype(np.float64), states=None, robot_states=None,
                            rewards=None, dones=None, language=task, init_index=None, steps=obs_rows))
        return out

    def starts(self) -> list[DemoStart]:
        columns = self.dataset.source.episode_columns(START_COLUMNS)
        out = []
        for ref in self.refs:
            row = columns.get(int(ref.key.removeprefix("episode_")), {})
            source = row.get("avbr/init_source") or UNRECORDED
            seed = row.get("avbr/init_seed")
            state = np.asarray(row.get("avbr/init_scene_state") or [], dtype=np.float64)
            out.append(DemoStart(ref.key, str(source), None if seed is None else int(seed), state))
        return out
