"""Simulator ground truth for the spatial probes (seed 002): object positions and "A left of B".

Demo files written by ``python -m avbr.envs.make_demos`` (LIBERO layout, ``avbr.envs.demos``)
store the flattened MuJoCo state before every action (``data/demo_i/states``) and the suite and
task they came from (``data.attrs["avbr_suite"]``, ``["avbr_task_id"]``). :func:`demo_object_tracks`
reads the states through the one demo reader (:class:`avbr.envs.demos.DemoFile`, with the same
options as the ``hdf5_demos`` pair source, so step ``t`` here is step ``t`` of its pairs), rebuilds
that task's simulator through the env registry (no rendering), sets each state and reads

- the world position of every movable object (LIBERO: the task's ``objects_dict``; robosuite: the
  task model's ``mujoco_objects``), and
- its projection into the agentview image (robosuite's ``camera_utils``), as pixel ``(col, row)``
  of the agentview frame in the reader's image convention (``flip_images``; default: the
  180-degree rotation).

Targets built from them: **position** = the objects' world ``(x, y)`` in metres (error reported in
cm); **relation** = for each pair ``(A, B)``, ``+1`` if A is left of B in the upright agentview
image (smaller column), else ``-1``.

Letters: ``T`` steps, ``K`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from avbr.envs.demos import DemoFile, DemoReadOptions

__all__ = ["ObjectTracks", "demo_object_tracks", "relation_labels"]


@dataclass
class ObjectTracks:
    """Objects of one demo.

    Attributes:
        names: ``[K]`` object names.
        xyz: ``float32 [T, K, 3]`` world positions (m) before each action.
        pixel: ``float32 [T, K, 2]`` ``(col, row)`` in the agentview image of the demo's size, in the
            reader's image convention.
    """

    names: list[str]
    xyz: np.ndarray
    pixel: np.ndarray


def _objects(env: Any) -> list[tuple[str, int]]:
    """``(name, body id)`` of the movable objects of a robosuite/LIBERO env."""
    sim = env.sim
    if hasattr(env, "objects_dict"):  # LIBERO problems
        return [(n, int(env.obj_body_id[n])) for n in sorted(env.objects_dict)]
    return sorted((o.name, int(sim.model.body_name2id(o.root_body))) for o in env.model.mujoco_objects)


def demo_object_tracks(path: str | Path, assets_dir: str | None = None, camera: str = "agentview",
                       options: DemoReadOptions | None = None) -> dict[str, ObjectTracks]:
    """Replay every demo of ``path`` in the simulator and track its objects (see the module docstring).

    Args:
        path: a LIBERO-layout demo file written by ``avbr.envs.make_demos``.
        assets_dir: LIBERO asset folder (``SuiteConfig.assets_dir``).
        camera: camera whose image the pixel positions refer to.
        options: demo reading options; the defaults match the ``hdf5_demos`` source's.

    Returns:
        ``{demo key: ObjectTracks}``.
    """
    from robosuite.utils.camera_utils import get_camera_transform_matrix, project_points_from_world_to_camera  # noqa: PLC0415

    from avbr.envs.config import SuiteConfig  # noqa: PLC0415
    from avbr.envs.registry import build_env  # noqa: PLC0415

    path = Path(path)
    options = options or DemoReadOptions()
    with DemoFile(path) as f:
        suite, task_id = f.info.suite, f.info.task_id
        if suite is None or task_id is None:
            raise ValueError(f"{path} has no data.attrs['avbr_suite'/'avbr_task_id']: spatial ground truth replays "
                             "states in the simulator and needs demo files written by `python -m "
                             "avbr.envs.make_demos` (they record suite and task)")
        demos = {k: f.read(k, options, cameras=(camera,)) for k in f.info.demos}
    size = int(next(iter(demos.values())).images[camera].shape[1])
    sim_env = build_env(SuiteConfig(name=suite, render=False, camera_size=size, assets_dir=assets_dir), task_id)
    try:
        env = sim_env.env
        sim = env.sim
        objs = _objects(env)
        out = {}
        for key, demo in demos.items():
            states = demo.states
            xyz = np.zeros((len(states), len(objs), 3), np.float32)
            for t, s in enumerate(states):
                sim.set_state_from_flattened(s)
                sim.forward()
                xyz[t] = [sim.data.body_xpos[b] for _, b in objs]
            world_to_px = get_camera_transform_matrix(sim, camera, size, size)
            rc = project_points_from_world_to_camera(xyz.reshape(-1, 3), world_to_px, size, size)  # [T*K, 2] (row, col), OpenGL image
            # robosuite's (row, col) index its upright view raw[::-1]; flip_images frames are
            # raw[::-1, ::-1] (column mirrored, row kept), frames as rendered are raw (row mirrored)
            col, row = rc[:, 1], rc[:, 0]
            col, row = (size - 1 - col, row) if options.flip_images else (col, size - 1 - row)
            pixel = np.stack([col, row], axis=-1).reshape(len(states), len(objs), 2)
            out[key] = ObjectTracks([n for n, _ in objs], xyz, pixel.astype(np.float32))
        return out
    finally:
        sim_env.close()


def relation_labels(pixel: np.ndarray, names: list[str], min_share: float = 0.1) -> tuple[np.ndarray, list[str]]:
    """``+1`` where A is left of B in the image, else ``-1``, for every unordered object pair.

    Args:
        pixel: ``[M, K, 2]`` ``(col, row)`` per sample and object.
        names: ``[K]`` object names.
        min_share: keep only pairs whose rarer label covers at least this share of samples (a pair
            that is always in the same order tests nothing).

    Returns:
        labels ``float32 [M, P]`` and the ``P`` pair names ``"A<B"`` ("A left of B").
    """
    labels, kept = [], []
    for i, j in combinations(range(len(names)), 2):
        lab = np.where(pixel[:, i, 0] < pixel[:, j, 0], 1.0, -1.0)
        if min((lab > 0).mean(), (lab < 0).mean()) >= min_share:
            labels.append(lab)
            kept.append(f"{names[i]}<{names[j]}")
    if not labels:
        raise ValueError(f"no object pair changes its left/right order in these samples (objects {names}); "
                         "use more varied demos (more init states or tasks)")
    return np.stack(labels, axis=1).astype(np.float32), kept
