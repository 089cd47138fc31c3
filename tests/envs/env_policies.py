"""A trivial :class:`avbr.policy.Policy` for the simulator tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class ZeroPolicy:
    """Zero actions; counts each env's steps and calls ``on_step(policy, env_ids)`` before acting.

    Args:
        on_step: optional hook, e.g. to kill a worker at a given step.
    """

    def __init__(self, on_step: Callable[[ZeroPolicy, list[int]], None] | None = None) -> None:
        self.on_step = on_step
        self.steps: dict[int, int] = {}

    def reset(self, env_ids, tasks) -> None:
        self.steps.update({int(i): 0 for i in env_ids})

    def act(self, obs, env_ids) -> np.ndarray:
        if self.on_step is not None:
            self.on_step(self, [int(i) for i in env_ids])
        for i in env_ids:
            self.steps[int(i)] += 1
        return np.zeros((len(env_ids), 7))
