"""Frame pairs with actions for probing, read from any ``avbr.data`` source that has actions.

The readers themselves live in ``avbr.data`` (issue 3); this module only walks *every* trajectory
of a source deterministically (probing needs all of them, with their ids for the split) and
stacks the pairs. Sources with actions:

**Bridge V2, raw release** (``source: bridge``, ``avbr.data.bridge.BridgeSource``)::

    <root>/<...>/<date>/raw/traj_group<g>/traj<n>/
        images0/im_0.jpg ... im_{T-1}.jpg   RGB frames of camera 0 (``images1``, ``images2``: others)
        policy_out.pkl                      list of T-1 dicts; ``d["actions"]`` is the 7-D action
                                            [dx, dy, dz, droll, dpitch, dyaw, gripper]
                                            (gripper continuous in [0, 1], 1 = open)
        obs_dict.pkl                        dict of per-step arrays: ``full_state``, ``state``,
                                            ``qpos``, ``qvel``, ``eef_transform``, ``time_stamp``, ...
        agent_data.pkl                      (not read)
        lang.txt                            instruction, then ``confidence: <x>`` lines

    (the layout that rail-berkeley/bridge_data_v2's ``data_processing/bridgedata_raw_to_numpy.py``
    reads: actions from ``policy_out.pkl`` entries' ``"actions"``, frame ``t`` paired with action
    ``t``.) The trajectory id is the folder path relative to ``root``, so the split is by
    trajectory. As that script does, data collected before 2021-07-23 (one-step camera latency)
    loses its first observation and last action (``latency_shift``, on by default).

**Bridge V2, RLDS / TFDS release** (``source: bridge_rlds``, ``avbr.data.bridge_rlds``):
``bridge_dataset/1.0.0/*-train.tfrecord-*`` shards of ``tf.train.Example`` episodes
(``steps/observation/image_0..3`` JPEG, ``steps/action`` [T, 7] whose last row is padding,
``steps/language_instruction``), read without TensorFlow; the trajectory id is ``<shard>:<record>``.

**LeRobotDataset v2.0 / v2.1 / v3.0** (``source: lerobot``, ``avbr.data.lerobot``): parquet frames
with ``action`` and ``observation.state`` (key maps ``lerobot_libero`` / ``openpi_libero``), mp4 or
in-parquet images; the trajectory id is ``<data parquet>:episode_<i>``.

**LIBERO / robomimic hdf5** (``source: hdf5_demos``): ``data/demo_i/{obs/agentview_rgb, actions}``,
7-D OSC delta actions, gripper -1 open / +1 closed; the trajectory id is ``<file>:demo_i``.

Letters: ``M`` pairs, ``H, W`` pixels, ``A`` action width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avbr.cli import ConfigError, InputError
from avbr.data import FramePairSource, GapSchedule, build_source, resize_center_crop

__all__ = ["PairSet", "collect_pairs", "load_pairs"]


@dataclass
class PairSet:
    """Stacked frame pairs ``(o_t, o_{t+k})`` of many trajectories.

    Attributes:
        prev: ``uint8 [M, H, W, 3]`` frame ``o_t``.
        curr: ``uint8 [M, H, W, 3]`` frame ``o_{t+k}``.
        action: ``float32 [M, A]`` action ``a_t``.
        episode: ``[M]`` trajectory id (str), the split unit.
        task: ``[M]`` instruction (str).
        t: ``int64 [M]`` index of ``o_t`` in its trajectory.
        length: ``int64 [M]`` length of the trajectory (frames).
        gap: ``k``.
    """

    prev: np.ndarray
    curr: np.ndarray
    action: np.ndarray
    episode: np.ndarray
    task: np.ndarray
    t: np.ndarray
    length: np.ndarray
    gap: int

    def __len__(self) -> int:
        return len(self.prev)


def collect_pairs(
    source: FramePairSource,
    gap: int = 1,
    stride: int = 1,
    max_episodes: int | None = None,
    max_pairs_per_episode: int | None = None,
    image_size: int | None = None,
) -> PairSet:
    """Every ``stride``-th pair ``(t, t + gap)`` of every trajectory of ``source``.

    Args:
        source: a built ``avbr.data`` source whose samples carry ``action``.
        gap: ``k`` frames between ``o_t`` and ``o_{t+k}`` (>= 1).
        stride: step between consecutive ``t`` of one trajectory.
        max_episodes: keep the first ``n`` trajectories (sorted ids), all when None.
        max_pairs_per_episode: cap per trajectory (evenly spaced ``t``), all when None.
        image_size: resize (short side) and centre-crop frames to this side; keep them as read when
            None (then every trajectory must have one frame size).

    Raises:
        ValueError: when the source has no actions or no trajectory is long enough.
    """
    if gap < 1 or stride < 1:
        raise ConfigError(f"gap and stride must be >= 1, got gap={gap}, stride={stride}")
    refs = source.episodes()[: max_episodes or None]
    rows: dict[str, list] = {k: [] for k in ("prev", "curr", "action", "episode", "task", "t", "length")}
    for ref in refs:
        length = source.episode_length(ref)
        ts = np.arange(0, length - gap, stride)
        if max_pairs_per_episode is not None and len(ts) > max_pairs_per_episode:
            ts = ts[np.linspace(0, len(ts) - 1, max_pairs_per_episode).round().astype(int)]
        for t in ts:
            s = source.read_pair(ref, int(t), gap)
            if "action" not in s:
                raise InputError(
                    f"{type(source).__name__} gave no action for {s['episode']} t={t}: action probing needs a "
                    "source with actions (bridge with policy_out.pkl, hdf5_demos with data/demo_i/actions)"
                )
            prev, curr = s["prev"], s["curr"]
            if image_size is not None:
                prev, curr = resize_center_crop(prev, image_size), resize_center_crop(curr, image_size)
            for k, v in (("prev", prev), ("curr", curr), ("action", s["action"]), ("episode", s["episode"]),
                         ("task", s["task"]), ("t", int(t)), ("length", length)):
                rows[k].append(v)
    if not rows["prev"]:
        raise InputError(f"no pair with gap {gap} in {len(refs)} trajectories of {source!r}")
    return PairSet(
        prev=np.stack(rows["prev"]), curr=np.stack(rows["curr"]),
        action=np.stack(rows["action"]).astype(np.float32),
        episode=np.asarray(rows["episode"]), task=np.asarray(rows["task"]),
        t=np.asarray(rows["t"], np.int64), length=np.asarray(rows["length"], np.int64), gap=gap,
    )


def load_pairs(
    source: str, root: str, gap: int = 1, stride: int = 1, max_episodes: int | None = None,
    max_pairs_per_episode: int | None = None, image_size: int | None = None, **source_kwargs,
) -> PairSet:
    """:func:`collect_pairs` on the registered source ``source`` (``bridge``, ``hdf5_demos``...)."""
    src = build_source(source, root, gap=GapSchedule(max_gap=max(gap, 1)), **source_kwargs)
    return collect_pairs(src, gap, stride, max_episodes, max_pairs_per_episode, image_size)
