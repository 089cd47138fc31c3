"""Training samples for the VLA adapters, read from LIBERO-layout demonstration files.

Layout read (official LIBERO hdf5; ARCHITECTURE.md), through the one demo reader
:class:`avbr.envs.demos.DemoFile`::

    data/                  attrs: problem_info (JSON, "language_instruction")
      demo_i/obs/agentview_rgb   uint8 [T, H, W, 3]   (as rendered: upside down)
      demo_i/obs/ee_states       float [T, 6]         eef position + axis-angle
      demo_i/obs/gripper_states  float [T, 2]         gripper qpos
      demo_i/actions             float [T, 7]         OSC delta, gripper -1 open / +1 closed

A sample at step ``t`` is ``prev`` = frame ``max(t - frame_gap, 0)``, ``curr`` = frame ``t``, the
8-D state at ``t``, and the action chunk ``actions[t : t + chunk]``; steps past the episode end
repeat the last action and are flagged in ``action_is_pad`` (losses ignore them, as lerobot does
with ``action_is_pad``). Steps are the reader's: frame ``t`` is the observation before
``actions[t]`` (official LIBERO files are re-paired), OpenVLA's no-op steps dropped when
``drop_noops``; frames are in the convention of ``flip_images``, converted by the same function as
rollout observations (set it to the evaluation's ``suite.flip_images``).

:func:`write_synthetic_demos` writes a **synthetic** file in this layout (a scripted 2-D reaching
task, no simulator) for smoke runs on machines without LIBERO; it is labelled as such in the
file's attributes and in every log line of the fine-tuning entry point.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from avbr.cli import ConfigError
from avbr.envs.demos import DemoFile, DemoFileError, DemoReadOptions

SYNTHETIC_TASKS = ("reach the red block", "reach the green block")


class LiberoDemoDataset(Dataset):
    """Every step of every demo in the given LIBERO-layout files, loaded into memory.

    Args:
        paths: hdf5 files (a LIBERO suite folder holds one per task).
        chunk: actions per sample (Pi0: 50, OpenVLA: 1, OpenVLA-OFT: 8).
        frame_gap: steps between ``prev`` and ``curr``.
        camera: image key under ``obs/``.
        state_keys: keys under ``obs/`` concatenated into the state (LIBERO: 6 + 2 = 8 dims).
        flip_images: the image convention (``SuiteConfig.flip_images`` of the evaluation).
        drop_noops: drop OpenVLA's no-op steps (:mod:`avbr.envs.demos`).
    """

    def __init__(
        self,
        paths: list[str | Path],
        chunk: int,
        frame_gap: int = 1,
        camera: str = "agentview_rgb",
        state_keys: tuple[str, ...] = ("ee_states", "gripper_states"),
        flip_images: bool = True,
        drop_noops: bool = True,
    ) -> None:
        if not paths:
            raise ConfigError("no demo files given; pass data.paths=[...] or data.synthetic=true")
        self.chunk, self.frame_gap = chunk, frame_gap
        self.frames: list[np.ndarray] = []  # per episode uint8 [T, H, W, 3]
        self.states: list[np.ndarray] = []  # per episode float32 [T, S]
        self.actions: list[np.ndarray] = []  # per episode float32 [T, A]
        self.instructions: list[str] = []
        self.index: list[tuple[int, int]] = []  # (episode, t)
        options = DemoReadOptions(flip_images=flip_images, drop_noops=drop_noops)
        for path in paths:
            with DemoFile(path) as f:
                task = f.info.language or Path(path).stem.replace("_demo", "").replace("_", " ").strip()
                for key in f.info.demos:
                    demo = f.read(key, options, cameras=(camera,))
                    missing = [k for k in state_keys if k not in demo.obs]
                    if missing:
                        raise DemoFileError(path, f"{key}/obs lacks {missing}; have {sorted(demo.obs)} "
                                                  "(set data.state_keys)")
                    img = demo.images[camera]
                    self.frames.append(img)
                    self.states.append(np.concatenate([demo.obs[k] for k in state_keys], -1).astype(np.float32))
                    self.actions.append(demo.actions.astype(np.float32))
                    self.instructions.append(task)
                    ep = len(self.frames) - 1
                    self.index.extend((ep, t) for t in range(len(img)))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        ep, t = self.index[i]
        frames, actions = self.frames[ep], self.actions[ep]
        steps = np.arange(t, t + self.chunk)
        pad = steps >= len(actions)
        return {
            "prev": torch.from_numpy(frames[max(t - self.frame_gap, 0)]),  # uint8 [H, W, 3]
            "curr": torch.from_numpy(frames[t]),  # uint8 [H, W, 3]
            "state": torch.from_numpy(self.states[ep][t]),  # [S]
            "actions": torch.from_numpy(actions[np.minimum(steps, len(actions) - 1)]),  # [chunk, A]
            "action_is_pad": torch.from_numpy(pad),  # bool [chunk]
            "instruction": self.instructions[ep],
        }

    def all_actions(self) -> torch.Tensor:
        """Every action ``[M, A]`` (normalisation statistics)."""
        return torch.from_numpy(np.concatenate(self.actions))

    def all_states(self) -> torch.Tensor:
        """Every state ``[M, S]``."""
        return torch.from_numpy(np.concatenate(self.states))


def collate(samples: list[dict]) -> dict:
    """Stack tensors; instructions stay a list of strings."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "instruction"}
    out["instruction"] = [s["instruction"] for s in samples]
    return out


def compact_demo_file(
    src: str | Path,
    dst: str | Path,
    camera: str = "agentview_rgb",
    state_keys: tuple[str, ...] = ("ee_states", "gripper_states"),
) -> Path:
    """Copy only what :class:`LiberoDemoDataset` reads into a gzip-compressed file of the same layout.

    LIBERO-layout files are stored uncompressed with both cameras and the simulator states; the
    copy keeps ``obs/{camera, *state_keys}``, ``actions`` and the ``data`` attributes, which makes
    it small enough to carry to another machine.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        data = fout.create_group("data")
        for k, v in fin["data"].attrs.items():
            data.attrs[k] = v
        for key, demo in fin["data"].items():
            for name in (*(f"obs/{k}" for k in (camera, *state_keys)), "actions"):
                data.create_dataset(f"{key}/{name}", data=demo[name][()], compression="gzip", compression_opts=4)
    return dst


def write_synthetic_demos(
    directory: str | Path, n_demos: int = 10, length: int = 40, size: int = 64, seed: int = 0
) -> list[Path]:
    """Write one **synthetic** LIBERO-layout file per task in :data:`SYNTHETIC_TASKS`.

    Scene: a grey background with a red and a green block at random places and a blue square
    (the end effector). The scripted expert moves the effector toward the block the instruction
    names (x/y OSC deltas, clipped to [-1, 1]), closes the gripper (+1) once there. Actions
    therefore depend on both the image and the instruction. Frames are stored as a renderer would
    give them (rotated by 180 degrees, like LIBERO's files), so the reader's ``flip_images=True``
    turns them back upright.

    Returns:
        the written file paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for task_id, task in enumerate(SYNTHETIC_TASKS):
        path = directory / f"synthetic_{task.replace(' ', '_')}_demo.hdf5"
        with h5py.File(path, "w") as f:
            data = f.create_group("data")
            data.attrs["problem_info"] = json.dumps({"language_instruction": task, "synthetic": True})
            data.attrs["synthetic"] = "scripted 2-D reaching demos written by avbr.adapters.vla.data; not LIBERO"
            for d in range(n_demos):
                blocks = rng.uniform(0.15, 0.85, size=(2, 2))  # red, green (x, y) in [0, 1]
                eef = rng.uniform(0.15, 0.85, size=2)
                frames, ee, grip, acts = [], [], [], []
                closed = -1.0
                for _ in range(length):
                    img = np.full((size, size, 3), 110, np.uint8)
                    for (x, y), colour in zip(blocks, ((220, 40, 40), (40, 200, 60)), strict=True):
                        _square(img, x, y, 0.08, colour)
                    _square(img, eef[0], eef[1], 0.05, (40, 60, 230))
                    delta = blocks[task_id] - eef
                    act = np.zeros(7, np.float32)
                    act[:2] = np.clip(delta * 8.0, -1.0, 1.0)
                    closed = 1.0 if np.linalg.norm(delta) < 0.04 else closed
                    act[6] = closed
                    frames.append(img[::-1, ::-1])  # stored upside down, as LIBERO
                    ee.append(np.r_[eef, 0.0, 0.0, 0.0, 0.0])
                    grip.append([0.04 * (1 - closed) / 2, -0.04 * (1 - closed) / 2])
                    acts.append(act)
                    eef = np.clip(eef + 0.05 * act[:2], 0.0, 1.0)
                demo = data.create_group(f"demo_{d}")
                demo.create_dataset("obs/agentview_rgb", data=np.stack(frames))
                demo.create_dataset("obs/ee_states", data=np.asarray(ee, np.float64))
                demo.create_dataset("obs/gripper_states", data=np.asarray(grip, np.float64))
                demo.create_dataset("actions", data=np.stack(acts).astype(np.float64))
        paths.append(path)
    return paths


def _square(img: np.ndarray, x: float, y: float, half: float, colour: tuple[int, int, int]) -> None:
    """Paint a filled square centred at ``(x, y)`` (fractions of the width/height) in place."""
    s = img.shape[0]
    x0, x1 = int((x - half) * s), int((x + half) * s) + 1
    y0, y1 = int((y - half) * s), int((y + half) * s) + 1
    img[max(y0, 0) : y1, max(x0, 0) : x1] = colour
