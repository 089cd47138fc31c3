"""The one place where simulator observations become AVBR observations.

Every backend returns robosuite-style raw observation dicts (``agentview_image``,
``robot0_eye_in_hand_image``, ``robot0_eef_pos``, ``robot0_eef_quat``, ``robot0_gripper_qpos``).
:func:`convert_obs` turns one of them into the fixed structure below; :func:`stack_obs` batches
them. Nothing else in the code base touches raw observations.

AVBR observation (per env; batched adds a leading ``B``):

* ``agentview``: ``uint8 [H, W, 3]`` RGB in the policy's image convention
  (:func:`policy_frames`); zeros when ``SuiteConfig.render`` is false.
* ``wrist``: ``uint8 [H, W, 3]``, eye-in-hand camera, same conventions.
* ``state``: ``float32 [8]`` = eef position (3, m, world frame), eef orientation as axis-angle (3,
  rad), gripper finger joint positions (2, m) -- the LIBERO/OpenVLA/LeRobot 8-D proprio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from avbr.envs.config import STATE_DIM, SuiteConfig

OBS_KEYS = ("agentview", "wrist", "state")
RAW_CAMERAS = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[4]`` in robosuite order (x, y, z, w) -> axis-angle ``[3]`` (rad)."""
    q = np.asarray(quat, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = np.sqrt(max(1.0 - w * w, 0.0))
    if den < 1e-8:
        return np.zeros(3)
    return q[:3] * (2.0 * np.arccos(w)) / den


def policy_frames(frames: np.ndarray, flip_images: bool) -> np.ndarray:
    """Frames as the simulator renders them -> the frames a policy sees (and trains on).

    The one conversion of camera images in AVBR: rollout observations (:func:`convert_obs`) and
    demo-file frames (:mod:`avbr.envs.demos`) both go through it, so a policy trains and acts on
    the same convention whatever the setting.

    robosuite renders with the OpenGL origin (``macros.IMAGE_CONVENTION = "opengl"``): the raw
    image is upside down, and robosuite's own upright view is ``raw[::-1]`` (its "opencv"
    convention). OpenVLA, openpi and LeRobot instead rotate by 180 degrees, ``raw[::-1, ::-1]``,
    which is that upright view mirrored left-right; ``flip_images=True`` follows them, because
    their checkpoints and datasets (RLDS/LeRobot LIBERO) are in that convention.

    Args:
        frames: ``uint8 [..., H, W, 3]`` as rendered (OpenGL convention).
        flip_images: ``SuiteConfig.flip_images``: rotate by 180 degrees; ``False`` returns a copy
            as rendered (upside down).

    Returns:
        ``uint8 [..., H, W, 3]``, C-contiguous, never a view of ``frames``.
    """
    frames = np.asarray(frames)
    assert frames.ndim >= 3 and frames.shape[-1] == 3, f"expected [..., H, W, 3] frames, got {frames.shape}"
    return np.ascontiguousarray(frames[..., ::-1, ::-1, :]) if flip_images else frames.copy()


def proprio_state(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """The 8-D proprio ``float32 [8]`` from a raw robosuite observation."""
    state = np.concatenate([
        np.asarray(raw["robot0_eef_pos"], dtype=np.float64),
        quat_to_axis_angle(raw["robot0_eef_quat"]),
        np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64),
    ]).astype(np.float32)
    assert state.shape == (STATE_DIM,), f"proprio state has shape {state.shape}, expected ({STATE_DIM},)"
    return state


def convert_obs(raw: Mapping[str, np.ndarray], cfg: SuiteConfig) -> dict[str, np.ndarray]:
    """Raw robosuite/LIBERO observation -> AVBR observation (see module docstring).

    Args:
        raw: the simulator's observation dict.
        cfg: supplies ``render``, ``camera_size`` and ``flip_images``.

    Returns:
        ``{"agentview": uint8 [H,W,3], "wrist": uint8 [H,W,3], "state": float32 [8]}``.
    """
    size = cfg.camera_size
    out: dict[str, np.ndarray] = {}
    for key, raw_key in RAW_CAMERAS.items():
        if cfg.render:
            image = np.asarray(raw[raw_key])
            assert image.dtype == np.uint8 and image.shape == (size, size, 3), (
                f"{raw_key}: expected uint8 {(size, size, 3)}, got {image.dtype} {image.shape}")
            out[key] = policy_frames(image, cfg.flip_images)
        else:
            out[key] = np.zeros((size, size, 3), dtype=np.uint8)
    out["state"] = proprio_state(raw)
    return out


def stack_obs(observations: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batch per-env observations: ``agentview``/``wrist`` ``uint8 [B,H,W,3]``, ``state``
    ``float32 [B,8]``."""
    assert len(observations) > 0, "cannot stack an empty batch of observations"
    batch = {key: np.stack([o[key] for o in observations]) for key in OBS_KEYS}
    for key in ("agentview", "wrist"):
        assert batch[key].dtype == np.uint8 and batch[key].ndim == 4 and batch[key].shape[-1] == 3, (
            f"{key}: expected uint8 [B,H,W,3], got {batch[key].dtype} {batch[key].shape}")
    assert batch["state"].dtype == np.float32 and batch["state"].shape[1:] == (STATE_DIM,), (
        f"state: expected float32 [B,{STATE_DIM}], got {batch['state'].dtype} {batch['state'].shape}")
    return batch
