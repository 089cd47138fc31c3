"""Demo files in the official LIBERO hdf5 layout, and the matching reader.

Layout (one file per task, as LIBERO's ``scripts/create_dataset.py`` writes it; ``T`` steps)::

    data/                                   attrs: env_name, env_args (JSON), problem_info (JSON),
                                                   bddl_file_name, bddl_file_content,
                                                   macros_image_convention, num_demos, total,
                                                   avbr_suite, avbr_task_id
      demo_<i>/                             attrs: num_samples, init_state, model_file,
                                                   avbr_init_index, init_source, init_seed,
                                                   init_scene_state
        obs/agentview_rgb     uint8 [T,H,W,3]   simulator orientation (see below)
        obs/eye_in_hand_rgb   uint8 [T,H,W,3]
        obs/ee_states         float64 [T,6]     eef pos (3) + axis-angle (3)
        obs/ee_pos, obs/ee_ori float64 [T,3]    the two halves of ee_states
        obs/gripper_states    float64 [T,2]     finger joint positions
        obs/joint_states      float64 [T,7]     arm joint positions
        actions               float64 [T,7]     OSC_POSE delta, gripper -1 open / +1 closed
        states                float64 [T,S]     flattened MuJoCo state before each action
        robot_states          float64 [T,9]     gripper qpos (2), eef pos (3), eef quat xyzw (4)
        rewards, dones        uint8 [T]         0 ..., 1 at the last step (successful episode)

Demos are numbered in the order episodes finished (``demo_<i>.attrs["avbr_init_index"]`` gives
each one's init state). Where each demo started (:mod:`avbr.envs.scenes`): ``init_source``
(``heldout_seed``: a held-out placement-sampler seed, what ``make_demos`` writes; or
``eval_init_state``), ``init_seed`` (that seed, or the init-state index) and
``init_scene_state`` (the flattened MuJoCo state right after the reset, before the settle
steps, which the evaluation compares with its init states). Step ``t`` holds the observation and state *before* ``actions[t]``; the file starts after the
settle steps. **Images are stored as the simulator renders them**: robosuite's default
``macros.IMAGE_CONVENTION = "opengl"``, i.e. upside down, exactly like the official LIBERO
files (which OpenVLA/openpi flip with ``[::-1, ::-1]`` when regenerating). The attribute
``data.macros_image_convention`` records it, and :func:`read_demo` returns upright frames, the
same orientation :mod:`avbr.envs.observations` gives policies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avbr.envs.config import EpisodeRecord
from avbr.envs.observations import flip_image

OBS_KEYS = ("agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states")
STEP_KEYS = ("actions", "states", "robot_states")
IMAGE_KEYS = ("agentview_rgb", "eye_in_hand_rgb")
IMAGE_CONVENTION = "opengl"


class DemoWriter:
    """Append successful episodes of one task to a LIBERO-layout hdf5 file.

    Args:
        path: output file (parent folders are created; an existing file is replaced).
        suite: suite name, stored as ``data.avbr_suite``.
        task_id: task index, stored as ``data.avbr_task_id``.
    """

    def __init__(self, path: str | Path, suite: str, task_id: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.path, "w")
        self.data = self.file.create_group("data")
        self.data.attrs["avbr_suite"] = suite
        self.data.attrs["avbr_task_id"] = task_id
        self.data.attrs["macros_image_convention"] = IMAGE_CONVENTION
        self.num_demos = 0
        self.total = 0

    def add(self, record: EpisodeRecord) -> None:
        """Write one successful, recorded episode as ``demo_<n>``."""
        if not record.success or record.data is None:
            raise ValueError("only successful episodes recorded with record=True can be written")
        data = record.data
        missing = [k for k in OBS_KEYS + STEP_KEYS if k not in data]
        if missing:
            raise ValueError(f"episode data lacks {missing}; record demos with SuiteConfig.render=True")
        if self.num_demos == 0:
            attrs = data["attrs"]
            env_args = json.loads(attrs["env_args"])
            self.data.attrs["env_name"] = env_args["env_name"]
            self.data.attrs["env_args"] = attrs["env_args"]
            self.data.attrs["problem_info"] = attrs["problem_info"]
            self.data.attrs["bddl_file_name"] = attrs["bddl_file_name"]
            bddl = Path(attrs["bddl_file_name"]) if attrs["bddl_file_name"] else None
            self.data.attrs["bddl_file_content"] = bddl.read_text() if bddl and bddl.is_file() else ""
        group = self.data.create_group(f"demo_{self.num_demos}")
        obs = group.create_group("obs")
        for key in OBS_KEYS:
            obs.create_dataset(key, data=data[key])
        obs.create_dataset("ee_pos", data=data["ee_states"][:, :3])
        obs.create_dataset("ee_ori", data=data["ee_states"][:, 3:])
        for key in STEP_KEYS:
            group.create_dataset(key, data=data[key])
        steps = len(data["actions"])
        flags = np.zeros(steps, dtype=np.uint8)
        flags[-1] = 1
        group.create_dataset("rewards", data=flags)
        group.create_dataset("dones", data=flags)
        group.attrs["num_samples"] = steps
        group.attrs["init_state"] = data["states"][0]
        group.attrs["model_file"] = data["model_file"]
        group.attrs["avbr_init_index"] = record.init_index
        group.attrs["init_source"] = record.init_source
        group.attrs["init_seed"] = record.init_index
        if data.get("init_scene_state") is not None:
            group.attrs["init_scene_state"] = data["init_scene_state"]
        self.num_demos += 1
        self.total += steps

    def close(self) -> None:
        """Write ``num_demos``/``total`` and close the file."""
        self.data.attrs["num_demos"] = self.num_demos
        self.data.attrs["total"] = self.total
        self.file.close()


def demo_keys(path: str | Path) -> list[str]:
    """``demo_<i>`` names in a file, in numeric order."""
    with h5py.File(path, "r") as f:
        return sorted(f["data"].keys(), key=lambda k: int(k.split("_")[1]))


def read_demo(path: str | Path, demo: str, upright: bool = True) -> dict[str, Any]:
    """Read one demo.

    Args:
        path: LIBERO-layout hdf5 file (ours or an official one).
        demo: e.g. ``"demo_0"``.
        upright: flip the images by 180 degrees when the file stores them in the OpenGL
            convention (``data.macros_image_convention``, missing = ``"opengl"`` as in the
            official files), so they match the env's observations.

    Returns:
        ``{"obs": {key: array}, "actions": [T,7], "states", "robot_states", "rewards", "dones",
        "language": str, "init_index": int | None}`` (``init_index`` only in AVBR files).
    """
    with h5py.File(path, "r") as f:
        data = f["data"]
        convention = data.attrs.get("macros_image_convention", IMAGE_CONVENTION)
        if isinstance(convention, bytes):
            convention = convention.decode()
        group = data[demo]
        out: dict[str, Any] = {"obs": {k: group["obs"][k][()] for k in group["obs"].keys()}}
        for key in STEP_KEYS + ("rewards", "dones"):
            out[key] = group[key][()]
        out["language"] = json.loads(data.attrs["problem_info"])["language_instruction"]
        out["init_index"] = int(group.attrs["avbr_init_index"]) if "avbr_init_index" in group.attrs else None
    if upright and convention == "opengl":
        for key in IMAGE_KEYS:
            if key in out["obs"]:
                out["obs"][key] = flip_image(out["obs"][key])
    return out
