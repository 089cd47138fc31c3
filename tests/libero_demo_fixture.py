"""A small demo file in the official LIBERO ``*_demo.hdf5`` layout, written the way LIBERO writes it.

:func:`write_official_demo` follows ``scripts/create_dataset.py`` of Lifelong-Robot-Learning/LIBERO
(commit 1952000, function ``main``), with a fake simulator in place of the replayed environment:

* the raw teleoperation demo has states ``s_0 .. s_N`` and actions ``a_0 .. a_{N-1}``; LIBERO
  restores ``s_0`` and, for each ``j``, calls ``obs = env.step(a_j)``;
* steps ``j < cap_index = 5`` are not recorded ("the force sensor is not stable");
* for ``j >= 5`` it appends that ``obs`` (the observation *after* ``a_j``, i.e. of state
  ``s_{j+1}``) to the obs lists and ``robot_states`` (``env.get_robot_state_vector(obs)``), and
  keeps ``states[valid_index]``, ``actions[valid_index]`` (``s_j``, ``a_j``);
* ``rewards``/``dones`` are 0 with a 1 at the last step; the ``data`` attributes are
  ``env_name``, ``problem_info``, ``macros_image_convention``, ``bddl_file_name``,
  ``bddl_file_content``, ``env_args``, ``num_demos``, ``total``; each demo has ``num_samples``,
  ``model_file``, ``init_state``.

The fake simulator's observation of raw state ``s_j`` encodes ``j`` in every pixel's green
channel (and in ``ee_states``, ``gripper_states``, ``joint_states``, ``robot_states``); ``s_j`` is
``[j, j, j]`` and the arm part of ``a_j`` is ``j`` unless ``j`` is listed as a no-op. The rendered
frames carry a red marker at the rendered top-left pixel, so orientation is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

CAP_INDEX = 5  # LIBERO create_dataset.py: `cap_index = 5`


def raw_frame(j: int, size: int = 8) -> np.ndarray:
    """The fake renderer's image of raw state ``s_j`` (as rendered): green = ``j``, red marker at [0, 0]."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 1] = j
    img[0, 0, 0] = 255
    return img


def raw_actions(n: int, noops: dict[int, float] | None = None) -> np.ndarray:
    """``a_0 .. a_{n-1}``: arm dims ``j`` (x) and gripper -1; ``noops[j] = g`` makes ``a_j`` arm-zero
    with gripper ``g``."""
    actions = np.zeros((n, 7))
    actions[:, 0] = np.arange(n)
    actions[:, 6] = -1.0
    actions[0, 0] = 0.5  # a_0 moves too (j = 0 would be zero)
    for j, gripper in (noops or {}).items():
        actions[j, :6] = 0.0
        actions[j, 6] = gripper
    return actions


def write_official_demo(path: Path, n_actions: tuple[int, ...] = (20,), suite: str = "libero_object",
                        task: str = "pick_up_the_soup_and_place_it_in_the_basket",
                        language: str = "pick up the soup and place it in the basket",
                        noops: dict[int, float] | None = None, size: int = 8) -> Path:
    """Write one file as ``create_dataset.py`` would from raw demos with ``n_actions`` actions each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bddl = f"/home/user/LIBERO/libero/libero/bddl_files/{suite}/{task}.bddl"
    with h5py.File(path, "w") as f:
        grp = f.create_group("data")
        grp.attrs["env_name"] = "Libero_Tabletop_Manipulation"
        grp.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                "domain_name": "robosuite", "language_instruction": language})
        grp.attrs["macros_image_convention"] = "opengl"
        grp.attrs["bddl_file_name"] = bddl
        grp.attrs["bddl_file_content"] = "(define (problem LIBERO_Tabletop_Manipulation))"
        grp.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation",
                                            "problem_name": "libero_tabletop_manipulation", "bddl_file": bddl,
                                            "env_kwargs": {}})
        total = 0
        for i, n in enumerate(n_actions):
            states = np.repeat(np.arange(n + 1, dtype=np.float64)[:, None], 3, axis=1)  # s_0 .. s_N
            actions = raw_actions(n, noops)
            valid_index, images, ee, grip, joints, robot = [], [], [], [], [], []
            for j in range(n):
                after = j + 1  # obs = env.step(a_j): the observation of s_{j+1}
                if j < CAP_INDEX:
                    continue
                valid_index.append(j)
                grip.append(np.full(2, after, np.float64))
                joints.append(np.full(7, after, np.float64))
                ee.append(np.full(6, after, np.float64))
                robot.append(np.full(9, after, np.float64))
                images.append(raw_frame(after, size))
            kept_states, kept_actions = states[valid_index], actions[valid_index]
            flags = np.zeros(len(kept_actions), np.uint8)
            flags[-1] = 1
            demo = grp.create_group(f"demo_{i}")
            obs = demo.create_group("obs")
            obs.create_dataset("gripper_states", data=np.stack(grip))
            obs.create_dataset("joint_states", data=np.stack(joints))
            obs.create_dataset("ee_states", data=np.stack(ee))
            obs.create_dataset("ee_pos", data=np.stack(ee)[:, :3])
            obs.create_dataset("ee_ori", data=np.stack(ee)[:, 3:])
            obs.create_dataset("agentview_rgb", data=np.stack(images))
            obs.create_dataset("eye_in_hand_rgb", data=np.stack(images))
            demo.create_dataset("actions", data=kept_actions)
            demo.create_dataset("states", data=kept_states)
            demo.create_dataset("robot_states", data=np.stack(robot))
            demo.create_dataset("rewards", data=flags)
            demo.create_dataset("dones", data=flags)
            demo.attrs["num_samples"] = len(images)
            demo.attrs["model_file"] = "<mujoco/>"
            demo.attrs["init_state"] = kept_states[0]
            total += len(images)
        grp.attrs["num_demos"] = len(n_actions)
        grp.attrs["total"] = total
    return path
