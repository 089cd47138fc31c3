"""Slow tests: one LIBERO task per suite builds, settles and steps with the offline assets."""

from __future__ import annotations

import numpy as np
import pytest

from avbr.envs import EpisodeSpec, SuiteConfig, VectorEnv, list_tasks, max_steps

pytestmark = pytest.mark.slow

# One task per suite (libero_10 task 0 is the one MuJoCo 4.0 throws objects around in).
CASES = [("libero_spatial", 5), ("libero_object", 0), ("libero_goal", 3), ("libero_10", 0),
         ("libero_90", 0)]


@pytest.mark.parametrize(("suite", "task_id"), CASES)
def test_libero_task_builds_settles_and_steps(suite: str, task_id: int, libero_env_var) -> None:
    cfg = SuiteConfig(name=suite, camera_size=64)
    tasks = list_tasks(cfg)
    assert len(tasks) == (90 if suite == "libero_90" else 10)
    assert all(t.num_init_states == 50 and t.language for t in tasks)
    with VectorEnv(cfg, 1) as venv:
        start = venv.reset([0], [EpisodeSpec(task_id, 7, 0)])
        assert start.error == [None], start.error
        assert start.obs["agentview"].shape == (1, 64, 64, 3) and start.obs["agentview"].dtype == np.uint8
        assert start.obs["agentview"].std() > 5 and start.obs["wrist"].std() > 1
        state0 = start.obs["state"][0]
        assert state0.shape == (8,) and np.all(np.isfinite(state0))
        assert state0[6] > 0.01 > -0.01 > state0[7], "gripper should be open after settling"
        for _ in range(3):
            out = venv.step([0], np.array([[0.0, 0.0, 0.5, 0.0, 0.0, 0.0, -1.0]]))
            assert out.error == [None], out.error
        assert out.obs["state"][0, 2] > state0[2] + 0.005, "eef did not move up under +z action"
        assert out.success.dtype == bool and not out.success[0]
        again = venv.reset([0], [EpisodeSpec(task_id, 7, 1)])
        assert again.init_digest == start.init_digest
    assert max_steps(cfg) == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300,
                              "libero_10": 520, "libero_90": 400}[suite]
