"""Registry of simulator suites.

A suite is a named set of tasks with one backend (``libero`` or ``robosuite``) and a default
episode length. Entries are registered by :mod:`avbr.envs.libero_env` and
:mod:`avbr.envs.robosuite_env`; their factories import the simulators lazily, so importing
``avbr.envs`` stays cheap and never touches MuJoCo or OpenGL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from avbr.envs.config import SuiteConfig, TaskInfo
from avbr.registry import UnknownNameError


class SimEnv(Protocol):
    """One simulator instance for one task, living inside a worker process.

    Attributes:
        task: the task this instance runs.
        env: the underlying robosuite environment (privileged access for scripted experts).
    """

    task: TaskInfo
    env: Any

    def reset(self, init_index: int) -> dict[str, np.ndarray]:
        """Put the scene in init state ``init_index``; return the raw observation."""

    def reset_heldout(self, seed: int) -> dict[str, np.ndarray]:
        """Draw a held-out scene with the suite's placement sampler seeded by ``seed``
        (``>= avbr.envs.scenes.HELDOUT_SEED_BASE``); return the raw observation."""

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        """Apply one 7-D action; return ``(raw observation, success)``."""

    def demo_attrs(self) -> dict[str, str]:
        """``env_args``, ``problem_info`` (JSON strings) and ``bddl_file_name`` for demo files."""

    def close(self) -> None:
        """Release the simulator and its renderer."""


@dataclass(frozen=True)
class SuiteSpec:
    """A registered suite.

    Attributes:
        name: registry name.
        backend: ``libero`` or ``robosuite``.
        default_max_steps: policy steps per episode when ``SuiteConfig.max_steps`` is ``None``.
        list_tasks: ``cfg -> [TaskInfo]`` (may import the simulator package).
        build_env: ``(cfg, task_id) -> SimEnv``; called inside a worker process.
        eval_init_states: ``(cfg, task_id, indices) -> float64 [N, S]``, the flattened MuJoCo
            states of evaluation init states ``indices`` (before settling), for the held-out
            check of demos (:mod:`avbr.envs.scenes`).
    """

    name: str
    backend: str
    default_max_steps: int
    list_tasks: Callable[[SuiteConfig], list[TaskInfo]]
    build_env: Callable[[SuiteConfig, int], SimEnv]
    eval_init_states: Callable[[SuiteConfig, int, Sequence[int]], np.ndarray]


_SUITES: dict[str, SuiteSpec] = {}


def register_suite(spec: SuiteSpec) -> SuiteSpec:
    """Add a suite; a duplicate name raises ``ValueError``."""
    if spec.name in _SUITES:
        raise ValueError(f"suite {spec.name!r} is already registered")
    _SUITES[spec.name] = spec
    return spec


def _ensure_builtin() -> None:
    from avbr.envs import libero_env, robosuite_env  # noqa: F401,PLC0415 - registers the suites


def list_suites() -> list[str]:
    """Names of all registered suites, sorted."""
    _ensure_builtin()
    return sorted(_SUITES)


def get_suite(name: str) -> SuiteSpec:
    """Look up a suite; an unknown name raises :class:`UnknownNameError` (a ``KeyError``) listing the known ones."""
    _ensure_builtin()
    if name not in _SUITES:
        raise UnknownNameError(f"unknown suite {name!r}; known suites: {', '.join(sorted(_SUITES))}")
    return _SUITES[name]


def max_steps(cfg: SuiteConfig) -> int:
    """Policy steps per episode for ``cfg`` (its ``max_steps`` or the suite default)."""
    return cfg.max_steps if cfg.max_steps is not None else get_suite(cfg.name).default_max_steps


def list_tasks(cfg: SuiteConfig) -> list[TaskInfo]:
    """All tasks of ``cfg.name``, in suite order."""
    return get_suite(cfg.name).list_tasks(cfg)


def build_env(cfg: SuiteConfig, task_id: int) -> SimEnv:
    """Build one simulator for ``task_id`` (call inside a worker)."""
    return get_suite(cfg.name).build_env(cfg, task_id)


def eval_init_states(cfg: SuiteConfig, task_id: int, indices: Sequence[int]) -> np.ndarray:
    """Flattened MuJoCo states ``float64 [N, S]`` of evaluation init states ``indices`` of a task."""
    return get_suite(cfg.name).eval_init_states(cfg, task_id, list(indices))
