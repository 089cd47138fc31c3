"""Privileged geometry queries on a robosuite ``MjSim`` (object extents, gripper axes).

All positions are world-frame metres. These helpers read the simulator state directly; they are
only for scripted experts, never for policies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Unit-cube corner signs, [8, 3].
_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)


def subtree_bodies(model: object, root: int) -> list[int]:
    """Ids of ``root`` and every body below it."""
    parents = np.asarray(model.body_parentid)
    bodies = [root]
    for body in range(root + 1, len(parents)):
        walk = body
        while walk > root and walk != 0:
            walk = int(parents[walk])
        if walk == root:
            bodies.append(body)
    return bodies


def collision_geoms(model: object, root: int) -> list[int]:
    """Collision geoms (``contype`` or ``conaffinity`` set) of the subtree under body ``root``."""
    bodies = set(subtree_bodies(model, root))
    geom_body = np.asarray(model.geom_bodyid)
    collides = (np.asarray(model.geom_contype) | np.asarray(model.geom_conaffinity)) != 0
    geoms = [g for g in range(len(geom_body)) if geom_body[g] in bodies and collides[g]]
    if not geoms:
        geoms = [g for g in range(len(geom_body)) if geom_body[g] in bodies]
    return geoms


def geom_corners(sim: object, geoms: list[int]) -> np.ndarray:
    """World coordinates of the local bounding-box corners of ``geoms``: ``[8 * len(geoms), 3]``."""
    model = sim.model._model
    data = sim.data._data
    points = []
    for g in geoms:
        center, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        local = center + _CORNERS * half  # [8, 3] in the geom frame
        rot = data.geom_xmat[g].reshape(3, 3)
        points.append(data.geom_xpos[g] + local @ rot.T)
    return np.concatenate(points)


@dataclass(frozen=True)
class Extent:
    """Axis-aligned world bounding box of an object: ``low``/``high`` ``[3]``."""

    low: np.ndarray
    high: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2

    @property
    def size(self) -> np.ndarray:
        return self.high - self.low


def object_extent(sim: object, geoms: list[int]) -> Extent:
    """World AABB of the given geoms."""
    pts = geom_corners(sim, geoms)
    return Extent(pts.min(axis=0), pts.max(axis=0))


def narrowest_direction(sim: object, geoms: list[int], step_deg: float = 5.0) -> tuple[np.ndarray, float]:
    """Horizontal unit direction ``[3]`` along which the object is thinnest, and that width (m)."""
    pts = geom_corners(sim, geoms)[:, :2]
    best_dir, best_width = np.array([1.0, 0.0, 0.0]), np.inf
    for angle in np.deg2rad(np.arange(0.0, 180.0, step_deg)):
        direction = np.array([np.cos(angle), np.sin(angle)])
        proj = pts @ direction
        width = float(proj.max() - proj.min())
        if width < best_width:
            best_dir, best_width = np.array([direction[0], direction[1], 0.0]), width
    return best_dir, best_width
