"""Scripted experts that use privileged simulator state.

:func:`make_expert` picks the expert for a suite through a registry (one factory per suite);
factories raise :class:`ExpertUnavailable` for tasks they cannot solve (e.g. libero_goal's
drawer, stove-knob and push tasks). Experts act on the simulator's raw observation and return
float ``[7]`` OSC_POSE delta actions (gripper -1 open, +1 closed), the policies' action space.

Supported:

* ``robosuite_lift`` (pick the cube, hold it up), ``robosuite_pickplacecan`` (can into its bin),
  ``robosuite_stack`` (cube A onto cube B);
* LIBERO tasks whose BDDL goal is a single ``(On obj target)`` or ``(In obj target)``: all of
  libero_object and libero_spatial, and the pick-and-place tasks of libero_goal, libero_10 and
  libero_90 (targets may be objects or fixture regions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from avbr.envs.registry import SimEnv


class Expert(Protocol):
    """A scripted expert bound to one episode of one simulator."""

    def act(self, raw_obs: dict[str, np.ndarray]) -> np.ndarray:
        """Next action, float ``[7]``."""


class ExpertUnavailable(RuntimeError):
    """No scripted expert exists for this task."""


_EXPERTS: dict[str, Callable[[SimEnv], Expert]] = {}


def register_expert(suite: str) -> Callable[[Callable[[SimEnv], Expert]], Callable[[SimEnv], Expert]]:
    """Decorator registering ``factory(sim_env) -> Expert`` for ``suite`` (duplicates raise)."""

    def wrap(factory: Callable[[SimEnv], Expert]) -> Callable[[SimEnv], Expert]:
        if suite in _EXPERTS:
            raise ValueError(f"an expert for suite {suite!r} is already registered")
        _EXPERTS[suite] = factory
        return factory

    return wrap


def expert_suites() -> list[str]:
    """Suites with a registered scripted expert (some of their tasks may still be unsupported)."""
    from avbr.envs.experts import libero_experts, robosuite_experts  # noqa: F401,PLC0415

    return sorted(_EXPERTS)


def make_expert(suite: str, sim_env: SimEnv) -> Expert:
    """The scripted expert for the current episode of ``sim_env`` (call right after reset).

    Raises:
        ExpertUnavailable: the suite has no expert, or the task is not one it can solve.
    """
    from avbr.envs.experts import libero_experts, robosuite_experts  # noqa: F401,PLC0415

    if suite not in _EXPERTS:
        raise ExpertUnavailable(f"no scripted expert for suite {suite!r}; experts exist for: "
                                f"{', '.join(sorted(_EXPERTS))}")
    return _EXPERTS[suite](sim_env)
