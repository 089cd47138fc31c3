"""Tiny on-disk fixtures in each source's official layout (built in tmp_path; nothing downloaded)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import av
import h5py
import numpy as np
from PIL import Image


def frame(i: int, size: int = 32) -> np.ndarray:
    """``uint8 [size, size, 3]`` frame whose grey level encodes ``i`` (``20 * i``) and a top-left marker."""
    img = np.full((size, size, 3), (20 * i) % 256, dtype=np.uint8)
    img[: size // 4, : size // 4] = [255, 0, 0]  # top-left red marker: checks orientation
    return img


def write_video(path: Path, n: int, size: int = 32, codec: str = "libx264", fps: int = 10) -> Path:
    """Encode frames ``frame(0..n-1)`` with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "g": "4"}  # near-lossless, a keyframe every 4 frames (exercises seeking)
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame(i, size), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_libero(path: Path, demos: int = 2, length: int = 6, size: int = 16) -> Path:
    """LIBERO layout: data/demo_i/{obs/agentview_rgb, actions, ...}, images stored upside down."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "put the bowl on the plate"})
        data.attrs["env_args"] = json.dumps({"env_name": "fixture"})
        for d in range(demos):
            g = data.create_group(f"demo_{d}")
            imgs = np.stack([frame(i, size)[::-1, ::-1] for i in range(length)])  # stored flipped
            g.create_dataset("obs/agentview_rgb", data=imgs)
            g.create_dataset("obs/eye_in_hand_rgb", data=imgs)
            g.create_dataset("actions", data=np.arange(length * 7, dtype=np.float64).reshape(length, 7) + 1000 * d)
            g.create_dataset("dones", data=np.zeros(length, dtype=np.uint8))
    return path


def write_bridge_traj(traj: Path, length: int = 5, size: int = 32) -> Path:
    """Bridge V2 raw layout (rail-berkeley/bridge_data_v2 data_processing/bridgedata_raw_to_numpy.py):
    ``<date>/raw/traj_group<g>/traj<n>/{images0/im_i.jpg, policy_out.pkl, obs_dict.pkl,
    agent_data.pkl, lang.txt}``; ``traj`` is the ``traj<n>`` folder.

    Index patterns: image ``i`` has grey level ``20 i``, ``policy_out[i]["actions"]`` is ``i``
    everywhere, ``obs_dict["full_state"][i]`` is ``100 + i`` and ``obs_dict["state"][i]`` is ``-i``
    (so reading the wrong key shows)."""
    (traj / "images0").mkdir(parents=True)
    for i in range(length):
        Image.fromarray(frame(i, size)).save(traj / "images0" / f"im_{i}.jpg", quality=100)
    policy_out = [
        {"actions": np.full(7, i, dtype=np.float32), "new_robot_transform": np.eye(4), "delta_robot_transform": np.eye(4),
         "policy_type": "VRTeleopPolicy"}
        for i in range(length - 1)
    ]
    steps = np.arange(length, dtype=np.float64)[:, None]
    obs = {"full_state": np.repeat(100 + steps, 7, 1), "state": np.repeat(-steps, 7, 1), "qpos": np.zeros((length, 6)),
           "qvel": np.zeros((length, 6)), "eef_transform": np.tile(np.eye(4), (length, 1, 1)),
           "time_stamp": list(0.2 * steps[:, 0]), "env_done": [False] * length}
    for name, obj in (("policy_out.pkl", policy_out), ("obs_dict.pkl", obs), ("agent_data.pkl", {"agent": "widowx"})):
        (traj / name).write_bytes(pickle.dumps(obj))
    (traj / "lang.txt").write_text("open the drawer\nconfidence: 1\n")
    return traj


def write_egodex_episode(folder: Path, i: int, n: int = 8, size: int = 32, attrs: dict | None = None) -> Path:
    """EgoDex layout: <task>/<i>.mp4 + <task>/<i>.hdf5 with transforms, confidences, camera
    intrinsics and the description attributes (``attrs``; default one ``llm_description``)."""
    mp4 = write_video(folder / f"{i}.mp4", n, size)
    with h5py.File(folder / f"{i}.hdf5", "w") as f:
        f.create_dataset("transforms/leftHand", data=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)))
        f.create_dataset("transforms/camera", data=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)))
        f.create_dataset("confidences/leftHand", data=np.ones(n, dtype=np.float32))
        f.create_dataset("camera/intrinsic", data=np.eye(3, dtype=np.float32))
        for k, v in ({"llm_description": "fold the towel"} if attrs is None else attrs).items():
            f.attrs[k] = v
    return mp4


def write_images(folder: Path, n: int = 3, size: int = 24) -> Path:
    (folder / "cls_a").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(frame(i, size)).save(folder / "cls_a" / f"{i}.png")
    return folder


def truncate(path: Path, keep: float = 0.3) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
