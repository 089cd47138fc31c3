"""Simulators behind one vectorised interface; scripted experts; demo files.

Public API (see :mod:`avbr.envs.vector` for the episode protocol and a usage example):

* :class:`SuiteConfig` (Hydra group ``suite``), :func:`list_suites`, :func:`get_suite`,
  :func:`list_tasks`, :func:`max_steps`;
* :class:`VectorEnv` (``reset(env_ids, specs)``, ``step(env_ids, actions)`` -> :class:`VecStep`);
* :func:`run_episodes` (batched policy in this process), :func:`run_expert_episodes` (scripted
  experts inside the workers), :func:`episode_specs`, :class:`EpisodeRecord`; policies implement :class:`avbr.policy.Policy`;
* :class:`avbr.envs.demos.DemoWriter` / :class:`avbr.envs.demos.DemoFile` (the one demo-file reader);
* ``python -m avbr.envs.make_demos suite=... n_per_task=... workers=... out=...``.

Importing this package never imports MuJoCo, robosuite or LIBERO; the suite factories do.
"""

from avbr.envs.config import (ACTION_DIM, STATE_DIM, EpisodeRecord, EpisodeSpec, SuiteConfig,
                              TaskInfo)
from avbr.envs.registry import get_suite, list_suites, list_tasks, max_steps
from avbr.envs.vector import (VecStep, VectorEnv, WorkerCrashed, episode_specs,
                              run_episodes, run_expert_episodes)

__all__ = [
    "ACTION_DIM", "STATE_DIM", "EpisodeRecord", "EpisodeSpec", "SuiteConfig", "TaskInfo",
    "get_suite", "list_suites", "list_tasks", "max_steps",
    "VecStep", "VectorEnv", "WorkerCrashed", "episode_specs", "run_episodes",
    "run_expert_episodes",
]
