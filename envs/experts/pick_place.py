"""A pick-and-place state machine driven by privileged simulator state.

It emits 7-D OSC_POSE delta actions (the same action space as policies): position deltas towards
way-points, a yaw correction that aligns the gripper's closing axis with the object's narrowest
horizontal direction, and gripper -1 (open) / +1 (closed). Objects wider than the gripper opening
(bowls) are grasped at the rim, with the wall between the fingers.

Phases: ``approach`` (above the grasp point) -> ``descend`` -> ``grasp`` (close) -> ``lift`` ->
``carry`` (above the target) -> ``lower`` -> ``release`` (open) -> ``retreat``. If the object slips
out of the hand while lifting or carrying, the expert starts again from ``approach``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from avbr.envs.experts.geometry import Extent, collision_geoms, narrowest_direction, object_extent

# robosuite OSC_POSE scales an action of 1 to 0.05 m / 0.5 rad per control step.
POS_SCALE, ROT_SCALE = 0.05, 0.5
MAX_GRIPPER_OPENING = 0.075  # usable Panda finger opening (m)


@dataclass(frozen=True)
class PlaceTarget:
    """Where the held object goes.

    Attributes:
        xy: ``() -> [2]``, world xy the object's body origin must reach.
        surface_z: ``() -> float``, height of the support or rim to release the object above.
        clearance: release when the object's bottom is this far above ``surface_z`` (m).
    """

    xy: Callable[[], np.ndarray]
    surface_z: Callable[[], float]
    clearance: float = 0.02


@dataclass
class ExpertParams:
    """Gains and way-point offsets of :class:`PickPlaceExpert` (metres, steps)."""

    pos_gain: float = 1.0 / POS_SCALE * 0.9
    rot_gain: float = 1.0 / ROT_SCALE * 0.9
    hover: float = 0.10
    lift: float = 0.12
    carry_margin: float = 0.06
    grasp_steps: int = 12
    release_steps: int = 12
    reach_tol: float = 0.012
    descend_tol: float = 0.006
    phase_timeout: int = 80


class PickPlaceExpert:
    """Scripted pick (and optional place) for one object of a robosuite/LIBERO scene.

    Args:
        env: the robosuite environment (``SimEnv.env``).
        body_id: MuJoCo body id of the object to pick.
        target: where to put it; ``None`` only lifts it (robosuite Lift).
        params: gains and offsets.
    """

    def __init__(self, env: object, body_id: int, target: PlaceTarget | None,
                 params: ExpertParams | None = None) -> None:
        self.env = env
        self.sim = env.sim
        self.body_id = body_id
        self.target = target
        self.p = params or ExpertParams()
        self.geoms = collision_geoms(self.sim.model, body_id)
        robot = env.robots[0]
        self.eef_site = robot.eef_site_id
        gripper = robot.gripper
        self.finger_geoms = (
            [self.sim.model.geom_name2id(n) for n in gripper.important_geoms["left_fingerpad"]],
            [self.sim.model.geom_name2id(n) for n in gripper.important_geoms["right_fingerpad"]],
        )
        self.phase = "approach"
        self.phase_steps = 0
        self.grasp_point = np.zeros(3)
        self.target_rot = self._eef_rot()
        self.hold_offset = np.zeros(3)
        self.lift_goal = np.zeros(3)
        self.retreat_goal = np.zeros(3)
        self._plan_grasp()

    # --- state ---------------------------------------------------------------------------
    def _eef_pos(self) -> np.ndarray:
        return np.array(self.sim.data.site_xpos[self.eef_site])

    def _eef_rot(self) -> Rotation:
        return Rotation.from_matrix(np.array(self.sim.data.site_xmat[self.eef_site]).reshape(3, 3))

    def _closing_axis(self) -> np.ndarray:
        left = np.mean([self.sim.data.geom_xpos[g] for g in self.finger_geoms[0]], axis=0)
        right = np.mean([self.sim.data.geom_xpos[g] for g in self.finger_geoms[1]], axis=0)
        axis = left - right
        axis[2] = 0.0
        return axis / max(np.linalg.norm(axis), 1e-9)

    def extent(self) -> Extent:
        return object_extent(self.sim, self.geoms)

    def _obj_pos(self) -> np.ndarray:
        return np.array(self.sim.data.body_xpos[self.body_id])

    def _plan_grasp(self) -> None:
        """Choose the grasp point and the gripper yaw for the object's current pose."""
        ext = self.extent()
        direction, width = narrowest_direction(self.sim, self.geoms)
        closing = self._closing_axis()
        height = ext.size[2]
        if width <= MAX_GRIPPER_OPENING:
            point = ext.center.copy()
            point[2] = max(ext.low[2] + 0.5 * height, ext.high[2] - 0.035, ext.low[2] + 0.012)
            point[2] = min(point[2], ext.high[2] - 0.01)
            want = direction
        else:
            # Rim grasp: the fingers straddle the wall on the side nearest the gripper.
            to_eef = self._eef_pos() - ext.center
            to_eef[2] = 0.0
            radial = to_eef / max(np.linalg.norm(to_eef), 1e-9)
            radius = 0.5 * min(ext.size[0], ext.size[1])
            point = ext.center + radial * (radius - 0.012)
            point[2] = ext.high[2] - 0.015
            want = radial
        # Yaw that turns the current closing axis onto `want` (either sign: fingers are symmetric).
        angle = np.arctan2(closing[0] * want[1] - closing[1] * want[0], closing @ want)
        angle = (angle + np.pi / 2) % np.pi - np.pi / 2
        self.grasp_point = point
        self.target_rot = Rotation.from_euler("z", angle) * self._eef_rot()

    # --- control -------------------------------------------------------------------------
    def _action(self, goal: np.ndarray, gripper: float) -> np.ndarray:
        delta = np.clip((goal - self._eef_pos()) * self.p.pos_gain, -1.0, 1.0)
        rot_err = (self.target_rot * self._eef_rot().inv()).as_rotvec()
        rot = np.clip(rot_err * self.p.rot_gain, -1.0, 1.0)
        return np.concatenate([delta, rot, [gripper]])

    def _goto(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _holding(self) -> bool:
        return bool(np.linalg.norm(self._obj_pos() - self._eef_pos() - self.hold_offset) < 0.04)

    def act(self, raw_obs: dict[str, np.ndarray]) -> np.ndarray:
        """Next action ``float [7]`` (``raw_obs`` is unused: the expert reads the simulator)."""
        p = self.p
        self.phase_steps += 1
        eef = self._eef_pos()
        timed_out = self.phase_steps > p.phase_timeout
        if self.phase == "approach":
            goal = self.grasp_point + [0.0, 0.0, p.hover]
            if np.linalg.norm(goal - eef) < p.reach_tol * 2 or timed_out:
                self._goto("descend")
            return self._action(goal, -1.0)
        if self.phase == "descend":
            if np.linalg.norm(self.grasp_point - eef) < p.descend_tol or timed_out:
                self._goto("grasp")
            return self._action(self.grasp_point, -1.0)
        if self.phase == "grasp":
            if self.phase_steps >= p.grasp_steps:
                self.hold_offset = self._obj_pos() - eef
                self.lift_goal = eef + [0.0, 0.0, p.lift]
                self._goto("lift")
            return self._action(self.grasp_point, 1.0)
        if self.phase in ("lift", "carry", "lower") and not self._holding():
            self._plan_grasp()
            self._goto("approach")
            return self._action(eef + [0.0, 0.0, 0.02], -1.0)
        if self.phase == "lift":
            if self.target is None:
                return self._action(self.lift_goal, 1.0)
            if eef[2] > self.lift_goal[2] - p.reach_tol or timed_out:
                self._goto("carry")
            return self._action(self.lift_goal, 1.0)
        assert self.target is not None
        ext = self.extent()
        bottom_below_eef = eef[2] - ext.low[2]
        xy = self.target.xy() - self.hold_offset[:2]
        surface = self.target.surface_z()
        if self.phase == "carry":
            carry_z = max(self.lift_goal[2], surface + bottom_below_eef + p.carry_margin)
            goal = np.array([xy[0], xy[1], carry_z])
            if np.linalg.norm(goal[:2] - eef[:2]) < p.reach_tol or timed_out:
                self._goto("lower")
            return self._action(goal, 1.0)
        if self.phase == "lower":
            goal = np.array([xy[0], xy[1], surface + bottom_below_eef + self.target.clearance])
            if np.linalg.norm(goal - eef) < p.reach_tol or timed_out:
                self._goto("release")
            return self._action(goal, 1.0)
        if self.phase == "release":
            if self.phase_steps >= p.release_steps:
                self.retreat_goal = eef + [0.0, 0.0, p.hover]
                self._goto("retreat")
            return self._action(eef, -1.0)
        return self._action(self.retreat_goal, -1.0)
