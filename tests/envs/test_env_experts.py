"""Slow tests: scripted experts solve real tasks (few episodes; the full measurement is
``python eval/bench.py experts``)."""

from __future__ import annotations

import pytest

from avbr.envs import SuiteConfig, run_expert_episodes

pytestmark = pytest.mark.slow


def test_lift_expert_succeeds() -> None:
    records = run_expert_episodes(SuiteConfig(name="robosuite_lift", render=False),
                                  episodes_per_task=4, workers=2)
    assert sum(r.success for r in records) >= 3, [r.summary() for r in records]
    assert all(r.length < 200 for r in records if r.success)


def test_libero_object_expert_succeeds(libero_env_var) -> None:
    records = run_expert_episodes(SuiteConfig(name="libero_object", render=False), tasks=[0],
                                  episodes_per_task=2, workers=2)
    assert sum(r.success for r in records) >= 1, [r.summary() for r in records]


def test_unsupported_libero_goal_task_is_reported(libero_env_var) -> None:
    # libero_goal task 0: "open the middle drawer of the cabinet" is not a pick-and-place goal.
    records = run_expert_episodes(SuiteConfig(name="libero_goal", render=False), tasks=[0],
                                  episodes_per_task=1, workers=1)
    assert not records[0].success and "ExpertUnavailable" in records[0].error
