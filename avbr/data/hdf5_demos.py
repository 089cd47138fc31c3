"""LIBERO / robomimic demonstration files (hdf5)."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample, list_files
from avbr.data.gaps import GapSchedule

__all__ = ["HDF5DemoSource"]


@SOURCES.register("hdf5_demos")
class HDF5DemoSource(FramePairSource):
    """Demonstrations in the official LIBERO / robomimic hdf5 layout.

    On disk: any number of ``*.hdf5`` files under ``root`` (recursive), each::

        data/                         attrs: problem_info (JSON with "language_instruction", LIBERO),
                                             env_args, bddl_file_name
          demo_0/
            obs/agentview_rgb         uint8 [T, H, W, 3]  (camera key configurable)
            obs/eye_in_hand_rgb       uint8 [T, H, W, 3]
            actions                   float [T, A]        (LIBERO: 7-D OSC delta, gripper -1 open)
            ...                       states, robot_states, rewards, dones (not read)
          demo_1/ ...

    LIBERO's raw files store images upside down (robosuite renders with the OpenGL origin), so
    ``flip_180=True`` (the default) rotates them upright; robomimic files written with upright
    images take ``flip_180=False`` and ``camera="agentview_image"``. The task is the
    ``language_instruction`` of ``problem_info`` when present, else the file name with ``_demo``
    and underscores stripped (LIBERO file names are the instruction).

    Args:
        root: folder of hdf5 files.
        gap: gap schedule.
        camera: key under ``obs/``.
        flip_180: rotate frames by 180 degrees.
    """

    name = "hdf5_demos"

    def __init__(
        self, root: str, gap: GapSchedule | None = None, camera: str = "agentview_rgb", flip_180: bool = True
    ) -> None:
        super().__init__(root, gap)
        self.camera = camera
        self.flip_180 = flip_180
        self.units = list_files(self.root, {".hdf5", ".h5"})
        self._require_units("*.hdf5 files")
        # Per-process metadata cache (filled lazily, so in each DataLoader worker): demo keys per
        # file and frames per demo, which every draw needs before it reads two frames.
        self._keys: dict[str, list[EpisodeRef]] = {}
        self._lengths: dict[EpisodeRef, int] = {}

    def _open(self, path: str) -> h5py.File:
        try:
            return h5py.File(path, "r")
        except (OSError, ValueError) as e:
            raise CorruptFileError(path, f"not a readable hdf5 file ({e})") from e

    def episodes_in(self, unit: str) -> list[EpisodeRef]:
        if unit not in self._keys:
            with self._open(unit) as f:
                if "data" not in f:
                    raise CorruptFileError(unit, "no 'data' group (not the LIBERO/robomimic layout)")
                keys = sorted(f["data"].keys(), key=lambda k: (len(k), k))  # demo_2 before demo_10
            self._keys[unit] = [EpisodeRef(unit, k) for k in keys]
        return self._keys[unit]

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref not in self._lengths:
            with self._open(ref.path) as f:
                self._lengths[ref] = int(self._images(f, ref).shape[0])
        return self._lengths[ref]

    def _images(self, f: h5py.File, ref: EpisodeRef) -> h5py.Dataset:
        key = f"data/{ref.key}/obs/{self.camera}"
        if key not in f:
            have = list(f[f"data/{ref.key}/obs"].keys()) if f"data/{ref.key}/obs" in f else []
            raise CorruptFileError(ref.path, f"no {key}; cameras present: {have} (set `camera`)")
        return f[key]

    @staticmethod
    def _task(f: h5py.File, path: str) -> str:
        info = f["data"].attrs.get("problem_info")
        if info is not None:
            try:
                return str(json.loads(info)["language_instruction"]).strip()
            except (ValueError, KeyError, TypeError):
                pass
        stem = os.path.splitext(os.path.basename(path))[0]
        return stem.removesuffix("_demo").replace("_", " ")

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        with self._open(ref.path) as f:
            try:
                images = self._images(f, ref)
                prev, curr = images[t], images[t + k]
                demo = f[f"data/{ref.key}"]
                actions = np.asarray(demo["actions"][t : t + max(k, 1)], dtype=np.float32) if "actions" in demo else None
                task = self._task(f, ref.path)
            except (OSError, KeyError, ValueError) as e:
                raise CorruptFileError(ref.path, f"truncated or damaged dataset ({e})") from e
        if self.flip_180:
            prev, curr = prev[::-1, ::-1], curr[::-1, ::-1]
        extra = {} if actions is None else {"action": actions[0], "actions": actions}
        return self._pair(ref, prev, curr, t, k, task=task, **extra)
