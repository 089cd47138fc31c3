"""Experts for LIBERO pick-and-place tasks, planned from the task's BDDL goal.

A goal of exactly one ``(On obj target)`` or ``(In obj target)`` is supported. ``target`` is an
object (its body must end within 3 cm in xy, LIBERO's ``check_ontop``) or a region site such as
``basket_1_contain_region`` or ``flat_stove_1_cook_region`` (the object's body origin must end
inside the site's box).
"""

from __future__ import annotations

import numpy as np

from avbr.envs.experts import ExpertUnavailable, register_expert
from avbr.envs.experts.geometry import collision_geoms, object_extent
from avbr.envs.experts.pick_place import PickPlaceExpert, PlaceTarget
from avbr.envs.registry import SimEnv

LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


def _target(env: object, name: str) -> PlaceTarget:
    """Place target for a goal argument: a region site (on an object or fixture) or an object."""
    sim = env.sim
    if name in env.object_sites_dict:
        site = sim.model.site_name2id(name)
        parent_name = getattr(env.object_sites_dict[name], "parent_name", None)
        site_xy = lambda: np.array(sim.data.site_xpos[site][:2])  # noqa: E731
        if parent_name in env.obj_body_id:
            # Release above the parent's rim (a basket's walls), at most 5 cm above the site.
            geoms = collision_geoms(sim.model, env.obj_body_id[parent_name])

            def surface() -> float:
                return float(min(object_extent(sim, geoms).high[2], sim.data.site_xpos[site][2] + 0.05))

            return PlaceTarget(xy=site_xy, surface_z=surface, clearance=0.03)
        return PlaceTarget(xy=site_xy, surface_z=lambda: float(sim.data.site_xpos[site][2]),
                           clearance=0.03)
    if name in env.obj_body_id:
        body = env.obj_body_id[name]
        geoms = collision_geoms(sim.model, body)
        return PlaceTarget(xy=lambda: np.array(sim.data.body_xpos[body][:2]),
                           surface_z=lambda: float(object_extent(sim, geoms).high[2]), clearance=0.015)
    raise ExpertUnavailable(f"goal target {name!r} is neither an object nor a region of the scene")


def libero_pick_place_expert(sim_env: SimEnv) -> PickPlaceExpert:
    """Pick-and-place expert for the goal ``(On|In obj target)`` of the current LIBERO task."""
    env = sim_env.env
    goal = env.parsed_problem["goal_state"]
    if len(goal) != 1 or goal[0][0].lower() not in ("on", "in") or len(goal[0]) != 3:
        raise ExpertUnavailable(f"{sim_env.task.suite} task {sim_env.task.task_id} "
                                f"({sim_env.task.name}) has goal {goal}; the scripted expert only "
                                "solves a single (On obj target) or (In obj target)")
    _, obj, target = goal[0]
    if obj not in env.obj_body_id or env.is_fixture(obj):
        raise ExpertUnavailable(f"goal object {obj!r} is not a movable object")
    return PickPlaceExpert(env, env.obj_body_id[obj], _target(env, target))


for _suite in LIBERO_SUITES:
    register_expert(_suite)(libero_pick_place_expert)
