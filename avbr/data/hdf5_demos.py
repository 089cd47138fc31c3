"""LIBERO / robomimic demonstration files (hdf5), read through :class:`avbr.envs.demos.DemoFile`."""

from __future__ import annotations

import os

import numpy as np

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample, list_files
from avbr.data.gaps import GapSchedule
from avbr.envs.demos import DemoFile, DemoFileError, DemoReadOptions

__all__ = ["HDF5DemoSource"]


@SOURCES.register("hdf5_demos")
class HDF5DemoSource(FramePairSource):
    """Demonstrations in the official LIBERO / robomimic hdf5 layout.

    On disk: any number of ``*.hdf5`` files under ``root`` (recursive), each::

        data/                         attrs: problem_info (JSON with "language_instruction", LIBERO),
                                             env_args, bddl_file_name
          demo_0/
            obs/agentview_rgb         uint8 [T, H, W, 3]  (robomimic: obs/agentview_image)
            obs/eye_in_hand_rgb       uint8 [T, H, W, 3]
            actions                   float [T, A]        (LIBERO: 7-D OSC delta, gripper -1 open)
            ...                       states, robot_states, rewards, dones (not read)
          demo_1/ ...

    The one demo reader (:mod:`avbr.envs.demos`) does the reading: frames come out in the
    convention of ``flip_images`` (the same function and setting as rollouts,
    ``SuiteConfig.flip_images``), steps are aligned so frame ``t`` is the observation before
    ``actions[t]`` (the official LIBERO files store the one after it), and OpenVLA's no-op steps are
    dropped when ``drop_noops``. The task is the ``language_instruction`` of ``problem_info`` when
    present, else the file name with ``_demo`` and underscores stripped (LIBERO file names are the
    instruction).

    Args:
        root: folder of hdf5 files.
        gap: gap schedule.
        camera: ``agentview`` / ``wrist`` (either naming) or a dataset name under ``obs/``.
        flip_images: rotate frames by 180 degrees (:func:`avbr.envs.observations.policy_frames`).
        drop_noops: drop OpenVLA's no-op steps.
        alignment: ``auto`` or an :data:`avbr.envs.demos.ALIGNMENTS` name.
    """

    name = "hdf5_demos"

    def __init__(
        self, root: str, gap: GapSchedule | None = None, camera: str = "agentview", flip_images: bool = True,
        drop_noops: bool = True, alignment: str = "auto",
    ) -> None:
        super().__init__(root, gap)
        self.camera = camera
        self.options = DemoReadOptions(flip_images=flip_images, drop_noops=drop_noops, alignment=alignment)
        self.units = list_files(self.root, {".hdf5", ".h5"})
        self._require_units("*.hdf5 files")
        # Per-process metadata cache (filled lazily, so in each DataLoader worker): demo keys per
        # file and the aligned (observation, action) rows per demo, which every draw needs.
        self._keys: dict[str, list[EpisodeRef]] = {}
        self._rows: dict[EpisodeRef, tuple[np.ndarray, np.ndarray]] = {}

    def _open(self, path: str) -> DemoFile:
        try:
            return DemoFile(path)
        except DemoFileError as e:
            raise CorruptFileError(path, e.reason) from e

    def episodes_in(self, unit: str) -> list[EpisodeRef]:
        if unit not in self._keys:
            with self._open(unit) as f:
                self._keys[unit] = [EpisodeRef(unit, k) for k in f.info.demos]
        return self._keys[unit]

    def _steps(self, f: DemoFile, ref: EpisodeRef) -> tuple[np.ndarray, np.ndarray]:
        if ref not in self._rows:
            self._rows[ref] = f.steps(ref.key, self.options)
        return self._rows[ref]

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref not in self._rows:
            with self._open(ref.path) as f:
                try:
                    self._steps(f, ref)
                except DemoFileError as e:
                    raise CorruptFileError(ref.path, e.reason) from e
        return len(self._rows[ref][0])

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        with self._open(ref.path) as f:
            try:
                obs_rows, act_rows = self._steps(f, ref)
                prev = f.frames(ref.key, self.camera, int(obs_rows[t]), self.options)
                curr = f.frames(ref.key, self.camera, int(obs_rows[t + k]), self.options)
                demo = f.data[ref.key]
                actions = (np.asarray(demo["actions"][()][act_rows[t : t + max(k, 1)]], dtype=np.float32)
                           if "actions" in demo else None)
                task = f.info.language
            except DemoFileError as e:
                raise CorruptFileError(ref.path, e.reason) from e
            except (OSError, KeyError, ValueError) as e:
                raise CorruptFileError(ref.path, f"truncated or damaged dataset ({e})") from e
        if not task:
            task = os.path.splitext(os.path.basename(ref.path))[0].removesuffix("_demo").replace("_", " ")
        extra = {} if actions is None else {"action": actions[0], "actions": actions}
        return self._pair(ref, prev, curr, t, k, task=task, **extra)
