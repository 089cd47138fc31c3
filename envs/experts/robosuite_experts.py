"""Experts for robosuite Lift, PickPlaceCan and Stack (see :mod:`avbr.envs.experts`)."""

from __future__ import annotations

import numpy as np

from avbr.envs.experts import register_expert
from avbr.envs.experts.geometry import collision_geoms, object_extent
from avbr.envs.experts.pick_place import PickPlaceExpert, PlaceTarget
from avbr.envs.registry import SimEnv


@register_expert("robosuite_lift")
def lift_expert(sim_env: SimEnv) -> PickPlaceExpert:
    """Grasp the cube and hold it 12 cm up (success: cube 4 cm above the table)."""
    return PickPlaceExpert(sim_env.env, sim_env.env.cube_body_id, target=None)


@register_expert("robosuite_pickplacecan")
def can_expert(sim_env: SimEnv) -> PickPlaceExpert:
    """Put the can into the centre of its quarter of the target bin (bin id 3)."""
    env = sim_env.env
    bin_id = env.object_to_id["can"]
    # Quarter `bin_id` of bin 2 spans half the bin in x and y (robosuite's not_in_bin).
    offset = np.array([env.bin_size[0] / 4 if bin_id in (1, 3) else -env.bin_size[0] / 4,
                       env.bin_size[1] / 4 if bin_id >= 2 else -env.bin_size[1] / 4])
    center = env.bin2_pos[:2] + offset
    target = PlaceTarget(xy=lambda: center, surface_z=lambda: float(env.bin2_pos[2]), clearance=0.03)
    return PickPlaceExpert(env, env.obj_body_id[env.objects[env.object_id].name], target)


@register_expert("robosuite_stack")
def stack_expert(sim_env: SimEnv) -> PickPlaceExpert:
    """Put cube A on cube B."""
    env = sim_env.env
    geoms_b = collision_geoms(env.sim.model, env.cubeB_body_id)
    target = PlaceTarget(xy=lambda: np.array(env.sim.data.body_xpos[env.cubeB_body_id][:2]),
                         surface_z=lambda: float(object_extent(env.sim, geoms_b).high[2]),
                         clearance=0.01)
    return PickPlaceExpert(env, env.cubeA_body_id, target)
