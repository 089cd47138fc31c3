"""Bridge V2 raw trajectory folders."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample
from avbr.data.gaps import GapSchedule

__all__ = ["BridgeSource", "read_image"]

_FRAME = re.compile(r"^im_(\d+)\.jpe?g$")


def read_image(path: str) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB; raises ``CorruptFileError``."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CorruptFileError(path, f"not a decodable image ({e})") from e


@SOURCES.register("bridge")
class BridgeSource(FramePairSource):
    """Bridge V2 in its raw (pre-RLDS) layout, with actions.

    On disk (``root`` may be the whole ``raw/`` tree; it is searched recursively)::

        <...>/traj_group<g>/traj<n>/
            images0/im_0.jpg ... im_{T-1}.jpg   camera 0, RGB jpg (camera index configurable)
            policy_out.pkl                       list of T-1 entries, each a dict with "actions"
                                                 (7-D: xyz delta, rpy delta, gripper) or an array
            obs_dict.pkl                         dict of arrays, "state" [T, 7] (read when present)
            lang.txt                             instruction on the first line, then "confidence: x"

    A sample carries ``action`` = the action at ``t`` (``float32 [7]``), ``actions`` = those from
    ``t`` to ``t + k - 1`` (``[k, 7]``), ``state`` = the proprioceptive state at ``t`` when
    ``obs_dict.pkl`` has one, and ``task`` = the instruction (``""`` when there is no lang.txt).
    Trajectories without ``policy_out.pkl`` still give frames, without actions.

    Args:
        root: folder to search for ``traj*/images<camera>`` folders.
        gap: gap schedule.
        camera: camera index (``images<camera>``).
    """

    name = "bridge"

    def __init__(self, root: str, gap: GapSchedule | None = None, camera: int = 0) -> None:
        super().__init__(root, gap)
        self.camera = camera
        images = f"images{camera}"
        self.units = sorted(
            d for d, subdirs, _ in os.walk(self.root, followlinks=True)
            if os.path.basename(d).startswith("traj") and images in subdirs
        )
        self._require_units(f"traj*/{images} folders")

    def _frames(self, traj: str) -> list[str]:
        folder = os.path.join(traj, f"images{self.camera}")
        names = [n for n in os.listdir(folder) if _FRAME.match(n)]
        names.sort(key=lambda n: int(_FRAME.match(n).group(1)))
        return [os.path.join(folder, n) for n in names]

    def episode_length(self, ref: EpisodeRef) -> int:
        return len(self._frames(ref.path))

    @staticmethod
    def _load_pickle(path: str) -> object | None:
        if not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError) as e:
            raise CorruptFileError(path, f"unreadable pickle ({e})") from e

    def actions(self, ref: EpisodeRef) -> np.ndarray | None:
        """All actions of a trajectory, ``float32 [T - 1, 7]``, or None without policy_out.pkl."""
        out = self._load_pickle(os.path.join(ref.path, "policy_out.pkl"))
        if out is None:
            return None
        rows = [o["actions"] if isinstance(o, dict) else o for o in out]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)

    @staticmethod
    def task(ref: EpisodeRef) -> str:
        """The instruction of a trajectory (first line of lang.txt), ``""`` when absent."""
        path = os.path.join(ref.path, "lang.txt")
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("confidence"):
                    return line
        return ""

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        frames = self._frames(ref.path)
        prev, curr = read_image(frames[t]), read_image(frames[t + k])
        extra: dict[str, np.ndarray] = {}
        actions = self.actions(ref)
        if actions is not None and t + max(k, 1) <= len(actions):
            extra["actions"] = actions[t : t + max(k, 1)]
            extra["action"] = extra["actions"][0]
        obs = self._load_pickle(os.path.join(ref.path, "obs_dict.pkl"))
        if isinstance(obs, dict) and "state" in obs and t < len(obs["state"]):
            extra["state"] = np.asarray(obs["state"][t], dtype=np.float32)
        return self._pair(ref, prev, curr, t, k, task=self.task(ref), **extra)
