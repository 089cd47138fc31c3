"""robosuite's built-in tasks (Lift, PickPlaceCan, Stack) with a Panda arm and OSC_POSE control.

They need only pip packages (robosuite 1.4.x, MuJoCo), which makes ``robosuite_lift`` the offline
default suite. Each suite has one task. Init state ``j`` is the scene robosuite samples after
seeding numpy's global generator with ``j`` (robosuite 1.4's placement samplers, the robot's
initialisation noise and the object sizes draw from ``np.random``), so episode ``j`` is
reproducible. This needs ``hard_reset=True`` (robosuite's default): object sizes are drawn when
the model is built, and only a hard reset rebuilds it after the seed.

Held-out scenes (demonstrations) are the same sampler with seeds from
``avbr.envs.scenes.HELDOUT_SEED_BASE`` on; evaluation init indices are refused there, so the
two seed ranges are disjoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from avbr.envs.config import SuiteConfig, TaskInfo
from avbr.envs.registry import SuiteSpec, register_suite
from avbr.envs.scenes import EVAL_INIT_STATE, HELDOUT_SEED, check_source

CAMERAS = ("agentview", "robot0_eye_in_hand")


@dataclass(frozen=True)
class RobosuiteTask:
    """A robosuite environment name and the instruction given to policies."""

    env_name: str
    language: str


class RobosuiteEnv:
    """One robosuite environment (see :class:`avbr.envs.registry.SimEnv`)."""

    def __init__(self, cfg: SuiteConfig, task: TaskInfo, env_name: str) -> None:
        import robosuite  # noqa: PLC0415 - heavy, lazy

        self.task = task
        self.env_kwargs: dict[str, Any] = dict(
            robots="Panda",
            controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False,
            has_offscreen_renderer=cfg.render,
            use_camera_obs=cfg.render,
            camera_names=list(CAMERAS),
            camera_heights=cfg.camera_size,
            camera_widths=cfg.camera_size,
            control_freq=cfg.control_freq,
            ignore_done=True,
            hard_reset=True,
            reward_shaping=False,
        )
        self.env_name = env_name
        self.env = robosuite.make(env_name, **self.env_kwargs)

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        check_source(EVAL_INIT_STATE, init_index)
        np.random.seed(init_index)
        return self.env.reset()

    def reset_heldout(self, seed: int) -> dict[str, np.ndarray]:
        check_source(HELDOUT_SEED, seed)
        np.random.seed(seed)
        return self.env.reset()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        obs, _, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        return obs, bool(self.env._check_success())

    def demo_attrs(self) -> dict[str, str]:
        env_args = {"type": 1, "env_name": self.env_name, "problem_name": self.env_name,
                    "bddl_file": "", "env_kwargs": self.env_kwargs}
        problem_info = {"problem_name": self.env_name, "domain_name": "robosuite",
                        "language_instruction": self.task.language}
        return {"env_args": json.dumps(env_args), "problem_info": json.dumps(problem_info),
                "bddl_file_name": ""}

    def close(self) -> None:
        self.env.close()


def _register(name: str, task: RobosuiteTask, max_steps: int) -> None:
    def list_tasks(cfg: SuiteConfig) -> list[TaskInfo]:
        return [TaskInfo(suite=name, task_id=0, name=task.env_name, language=task.language,
                         num_init_states=None)]

    def build_env(cfg: SuiteConfig, task_id: int) -> RobosuiteEnv:
        if task_id != 0:
            raise IndexError(f"suite {name!r} has one task (task_id 0), got task_id={task_id}")
        return RobosuiteEnv(cfg, list_tasks(cfg)[0], task.env_name)

    def eval_init_states(cfg: SuiteConfig, task_id: int, indices: list[int]) -> np.ndarray:
        # Simulated: one hard reset per seed, without cameras (~0.3-1 s each on a CPU).
        from dataclasses import replace  # noqa: PLC0415

        env = build_env(replace(cfg, render=False), task_id)
        try:
            states = []
            for i in indices:
                env.reset(i)
                states.append(env.env.sim.get_state().flatten())
        finally:
            env.close()
        return np.stack(states) if states else np.zeros((0, 0))

    register_suite(SuiteSpec(name=name, backend="robosuite", default_max_steps=max_steps,
                             list_tasks=list_tasks, build_env=build_env, eval_init_states=eval_init_states))


# Episode lengths: robomimic's rollout horizon (400) for the two pick tasks; Lift needs far fewer.
_register("robosuite_lift", RobosuiteTask("Lift", "lift the red cube"), 200)
_register("robosuite_pickplacecan", RobosuiteTask("PickPlaceCan", "put the can into its bin"), 400)
_register("robosuite_stack", RobosuiteTask("Stack", "stack the red cube on the green cube"), 400)
