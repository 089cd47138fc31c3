"""Rollout videos: MP4 at the control rate, outcome in the file name.

Frames are the upright agentview observations the policy saw (``uint8 [T, H, W, 3]``), one per
policy step, so playback at ``fps = control_freq`` (20 Hz for LIBERO and robosuite) is real time.
Encoded with imageio's ffmpeg writer (H.264, ``yuv420p`` for browser playback); sides are padded
to a multiple of 16 by imageio's ``macro_block_size``.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def video_name(task_id: int, episode: int, seed: int, success: bool) -> str:
    """``task03_ep007_seed0_success.mp4`` / ``..._failure.mp4``."""
    return f"task{task_id:02d}_ep{episode:03d}_seed{seed}_{'success' if success else 'failure'}.mp4"


def write_video(frames: np.ndarray, path: str | Path, fps: int) -> Path:
    """Write ``uint8 [T, H, W, 3]`` frames to an MP4 at ``fps`` frames per second.

    Raises:
        ValueError: frames are not ``uint8 [T, H, W, 3]`` with ``T >= 1``.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"video frames must be uint8 [T>=1, H, W, 3], got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, pixelformat="yuv420p",
                            macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
    tmp.replace(path)
    return path
