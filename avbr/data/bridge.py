"""Bridge V2 raw trajectory folders, read as the official converter reads them.

Reference: rail-berkeley/bridge_data_v2 ``data_processing/bridgedata_raw_to_numpy.py`` (the
script that turns the raw release into the numpy/TFDS datasets the Bridge papers train on). What
this reader takes from it:

* step ``j`` of a trajectory is image ``im_j``, action ``policy_out[j]["actions"]`` and state
  ``obs_dict["full_state"][j]`` (``process_images``/``process_actions``/``process_state``);
* collections dated before 2021-07-23 (the ``%Y-%m-%d_%H-%M-%S`` folder holding ``raw/``) have a
  one-step camera latency: the converter drops the first observation and the last action
  (``latency_shift`` in ``process_dc``), so step ``j`` is image ``im_{j+1}``, state
  ``full_state[j+1]`` and action ``j``. Here that shift is on by default (``latency_shift=True``);
* the instruction is the first ``lang.txt`` line that is not a ``confidence`` line.
"""

from __future__ import annotations

import os
import pickle
import re
from datetime import datetime

import numpy as np
from PIL import Image, UnidentifiedImageError

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample
from avbr.data.gaps import GapSchedule

__all__ = ["BridgeSource", "read_image", "collection_date", "LATENCY_CUTOFF"]

_FRAME = re.compile(r"^im_(\d+)\.jpe?g$")
# bridgedata_raw_to_numpy.py: "Data collected prior to 7-23 has a delay of 1, otherwise a delay of 0"
LATENCY_CUTOFF = datetime(2021, 7, 23)
_DATE_FORMAT = "%Y-%m-%d_%H-%M-%S"


def read_image(path: str) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB; raises ``CorruptFileError``."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise CorruptFileError(path, f"not a decodable image ({e})") from e


def collection_date(traj: str) -> datetime | None:
    """The date of the collection a ``<date>/raw/traj_group<g>/traj<n>`` folder belongs to, or None
    when the folder does not sit in that layout."""
    group = os.path.dirname(os.path.normpath(traj))
    raw = os.path.dirname(group)
    if os.path.basename(raw) != "raw":
        return None
    try:
        return datetime.strptime(os.path.basename(os.path.dirname(raw)), _DATE_FORMAT)
    except ValueError:
        return None


@SOURCES.register("bridge")
class BridgeSource(FramePairSource):
    """Bridge V2 in its raw (pre-RLDS) layout, with actions (see the module docstring).

    On disk (``root`` is searched recursively; it may be the whole release or one collection)::

        <...>/<YYYY-MM-DD_HH-MM-SS>/raw/traj_group<g>/traj<n>/
            images0/im_0.jpg ... im_{T-1}.jpg   camera 0, RGB jpg (camera index configurable)
            policy_out.pkl                       list of T-1 entries, each a dict with "actions"
                                                 (7-D: xyz delta, rpy delta, gripper) or an array
            obs_dict.pkl                         dict of per-step arrays; "full_state" [T, 7] is read
            lang.txt                             instruction, then "confidence: x" lines

    Time ``t`` of a sample is the converter's step ``t``: with the latency shift (collections
    before 2021-07-23) frame ``t`` is ``im_{t+1}``, the trajectory has ``T - 1`` frames and
    ``T - 2`` actions; otherwise frame ``t`` is ``im_t``, ``T`` frames and ``T - 1`` actions. A
    sample carries ``action`` = the action at ``t`` (``float32 [7]``), ``actions`` = those from
    ``t`` to ``t + k - 1`` (``[k, 7]``), ``state`` = ``full_state`` at ``t`` when ``obs_dict.pkl``
    exists, and ``task`` = the instruction (``""`` when there is no lang.txt). Trajectories
    without ``policy_out.pkl`` still give frames, without actions.

    Args:
        root: folder to search for ``traj*/images<camera>`` folders.
        gap: gap schedule.
        camera: camera index (``images<camera>``).
        latency_shift: apply the converter's one-step shift to collections dated before
            2021-07-23 (default). Every trajectory must then sit in a dated collection folder
            (``<date>/raw/traj_group*/traj*``), else the date, and so the shift, is unknown and
            construction fails. False reads every trajectory unshifted (frame ``t`` = ``im_t``).
    """

    name = "bridge"

    def __init__(self, root: str, gap: GapSchedule | None = None, camera: int = 0, latency_shift: bool = True) -> None:
        super().__init__(root, gap)
        self.camera = camera
        self.latency_shift = latency_shift
        images = f"images{camera}"
        self.units = sorted(
            d for d, subdirs, _ in os.walk(self.root, followlinks=True)
            if os.path.basename(d).startswith("traj") and images in subdirs
        )
        self._require_units(f"traj*/{images} folders")
        if latency_shift:
            undated = [u for u in self.units if collection_date(u) is None]
            if undated:
                raise ValueError(
                    f"{len(undated)} Bridge trajectories are not in a dated collection folder, e.g. {undated[0]}: "
                    "the raw release layout is <YYYY-MM-DD_HH-MM-SS>/raw/traj_group*/traj*, and the date decides "
                    "the one-step latency shift of collections before 2021-07-23. Keep that layout, or set "
                    "latency_shift=false (data.sources.<name>.kwargs.latency_shift=false) to read them unshifted."
                )

    def shift(self, ref: EpisodeRef) -> int:
        """1 for a trajectory the converter shifts (collected before 2021-07-23), else 0."""
        return int(self.latency_shift and collection_date(ref.path) < LATENCY_CUTOFF)

    def _frames(self, ref: EpisodeRef) -> list[str]:
        """Image paths of steps ``0 .. T - 1 - shift`` (``im_{shift}`` onwards)."""
        folder = os.path.join(ref.path, f"images{self.camera}")
        names = [n for n in os.listdir(folder) if _FRAME.match(n)]
        names.sort(key=lambda n: int(_FRAME.match(n).group(1)))
        return [os.path.join(folder, n) for n in names][self.shift(ref) :]

    def episode_length(self, ref: EpisodeRef) -> int:
        return len(self._frames(ref))

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
        """All actions of a trajectory, ``float32 [T - 1 - shift, 7]`` (the converter drops the last
        one of a shifted trajectory), or None without policy_out.pkl."""
        out = self._load_pickle(os.path.join(ref.path, "policy_out.pkl"))
        if out is None:
            return None
        rows = [o["actions"] if isinstance(o, dict) else o for o in out]
        acts = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        return acts[: len(acts) - self.shift(ref)]

    def states(self, ref: EpisodeRef) -> np.ndarray | None:
        """``obs_dict["full_state"]`` from step 0 on, ``float32 [T - shift, 7]``, or None without
        obs_dict.pkl; raises ``CorruptFileError`` when the file has no ``full_state``."""
        path = os.path.join(ref.path, "obs_dict.pkl")
        obs = self._load_pickle(path)
        if obs is None:
            return None
        if not isinstance(obs, dict) or "full_state" not in obs:
            keys = sorted(obs)[:10] if isinstance(obs, dict) else type(obs).__name__
            raise CorruptFileError(path, f"no 'full_state' entry (found {keys}); Bridge's converter reads it")
        return np.asarray(obs["full_state"], dtype=np.float32)[self.shift(ref) :]

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
        frames = self._frames(ref)
        prev, curr = read_image(frames[t]), read_image(frames[t + k])
        extra: dict[str, np.ndarray] = {}
        actions = self.actions(ref)
        if actions is not None and t + max(k, 1) <= len(actions):
            extra["actions"] = actions[t : t + max(k, 1)]
            extra["action"] = extra["actions"][0]
        states = self.states(ref)
        if states is not None and t < len(states):
            extra["state"] = states[t]
        return self._pair(ref, prev, curr, t, k, task=self.task(ref), **extra)
