"""The five LIBERO suites through the libero package's own benchmark API.

``benchmark.get_benchmark_dict()[suite]()`` gives the tasks (BDDL problem files and language),
their 50 fixed init states are loaded from the package's ``init_files`` (with
``torch.load(weights_only=False)``: they are pickled numpy arrays, which torch >= 2.6 refuses to
load by default), and each task runs in the package's ``ControlEnv`` (``OffScreenRenderEnv`` when
rendering). Success is the environment's own BDDL goal check.

Held-out scenes (demonstrations): ``reset_heldout(seed)`` seeds numpy through ``ControlEnv.seed``
(LIBERO's ``seed`` is ``np.random.seed``) and resets, so the task's own BDDL placement samplers
(robosuite's samplers, drawing from numpy's global generator) place the objects afresh; a scene
equal to one of the task's 50 init states raises :class:`avbr.envs.scenes.SceneCollision`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

import numpy as np

from avbr.envs.config import SuiteConfig, TaskInfo
from avbr.envs.libero_assets import prepare_libero
from avbr.envs.registry import SuiteSpec, register_suite
from avbr.envs.scenes import HELDOUT_SEED, SceneCollision, check_source, matching_states

CAMERAS = ("agentview", "robot0_eye_in_hand")
NUM_INIT_STATES = 50


@lru_cache(maxsize=None)
def _benchmark(suite: str, assets_dir: str | None) -> Any:
    prepare_libero(assets_dir)
    from libero.libero import benchmark  # noqa: PLC0415 - heavy, lazy

    return benchmark.get_benchmark_dict()[suite]()


def load_init_states(suite: str, task_id: int, assets_dir: str | None = None) -> np.ndarray:
    """The fixed init states of a task: ``float64 [50, S]`` flattened MuJoCo states."""
    import torch  # noqa: PLC0415

    bench = _benchmark(suite, assets_dir)  # first: prepares LIBERO's config (no interactive prompt)
    from libero.libero import get_libero_path  # noqa: PLC0415
    task = bench.get_task(task_id)
    path = os.path.join(get_libero_path("init_states"), task.problem_folder, task.init_states_file)
    return np.asarray(torch.load(path, weights_only=False))


class LiberoEnv:
    """One LIBERO task (see :class:`avbr.envs.registry.SimEnv`)."""

    def __init__(self, cfg: SuiteConfig, task: TaskInfo) -> None:
        from libero.libero import get_libero_path  # noqa: PLC0415
        from libero.libero.envs.env_wrapper import ControlEnv  # noqa: PLC0415

        bench = _benchmark(task.suite, cfg.assets_dir)
        libero_task = bench.get_task(task.task_id)
        self.task = task
        self.bddl_file_name = os.path.join(get_libero_path("bddl_files"), libero_task.problem_folder,
                                           libero_task.bddl_file)
        self.init_states = load_init_states(task.suite, task.task_id, cfg.assets_dir)
        self.env_kwargs: dict[str, Any] = dict(
            bddl_file_name=self.bddl_file_name,
            use_camera_obs=cfg.render,
            has_renderer=False,
            has_offscreen_renderer=cfg.render,
            camera_names=list(CAMERAS),
            camera_heights=cfg.camera_size,
            camera_widths=cfg.camera_size,
            control_freq=cfg.control_freq,
            ignore_done=True,
        )
        self.control_env = ControlEnv(**self.env_kwargs)
        self.env = self.control_env.env

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        if not 0 <= init_index < len(self.init_states):
            raise IndexError(f"{self.task.suite} task {self.task.task_id} has {len(self.init_states)} "
                             f"init states; init_index={init_index} is out of range")
        self.control_env.reset()
        return self.control_env.set_init_state(self.init_states[init_index])

    def reset_heldout(self, seed: int) -> dict[str, np.ndarray]:
        check_source(HELDOUT_SEED, seed)
        self.control_env.seed(seed)
        obs = self.control_env.reset()
        hits = matching_states(self.env.sim.get_state().flatten(), self.init_states)
        if hits:
            raise SceneCollision(f"{self.task.suite} task {self.task.task_id}: held-out seed {seed} sampled "
                                 f"evaluation init state(s) {hits}; the seed is skipped")
        return obs

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        obs, _, _, _ = self.control_env.step(np.asarray(action, dtype=np.float64))
        return obs, bool(self.control_env.check_success())

    def demo_attrs(self) -> dict[str, str]:
        env_args = {"type": 1, "env_name": type(self.env).__name__,
                    "problem_name": self.control_env.problem_name, "bddl_file": self.bddl_file_name,
                    "env_kwargs": self.env_kwargs}
        problem_info = {"problem_name": self.control_env.problem_name,
                        "domain_name": self.control_env.domain_name,
                        "language_instruction": self.control_env.language_instruction}
        return {"env_args": json.dumps(env_args), "problem_info": json.dumps(problem_info),
                "bddl_file_name": self.bddl_file_name}

    def close(self) -> None:
        self.control_env.close()


def _register(name: str, max_steps: int) -> None:
    def list_tasks(cfg: SuiteConfig) -> list[TaskInfo]:
        bench = _benchmark(name, cfg.assets_dir)
        return [TaskInfo(suite=name, task_id=i, name=bench.get_task(i).name,
                         language=bench.get_task(i).language, num_init_states=NUM_INIT_STATES)
                for i in range(bench.get_num_tasks())]

    def build_env(cfg: SuiteConfig, task_id: int) -> LiberoEnv:
        tasks = list_tasks(cfg)
        if not 0 <= task_id < len(tasks):
            raise IndexError(f"suite {name!r} has tasks 0..{len(tasks) - 1}, got task_id={task_id}")
        return LiberoEnv(cfg, tasks[task_id])

    def eval_init_states(cfg: SuiteConfig, task_id: int, indices: list[int]) -> np.ndarray:
        states = load_init_states(name, task_id, cfg.assets_dir)
        bad = [i for i in indices if not 0 <= i < len(states)]
        if bad:
            raise IndexError(f"{name} task {task_id} has {len(states)} init states; got indices {bad}")
        return states[indices]

    register_suite(SuiteSpec(name=name, backend="libero", default_max_steps=max_steps,
                             list_tasks=list_tasks, build_env=build_env, eval_init_states=eval_init_states))


# Max policy steps: OpenVLA's values (LeRobot uses 280 for libero_spatial).
for _name, _steps in (("libero_spatial", 220), ("libero_object", 280), ("libero_goal", 300),
                      ("libero_10", 520), ("libero_90", 400)):
    _register(_name, _steps)
