"""Slow tests: real robosuite rollouts through the vector interface and episode runners."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avbr.envs import (EpisodeSpec, SuiteConfig, VectorEnv, episode_specs, run_episodes,
                       run_expert_episodes)
from env_policies import ZeroPolicy

pytestmark = pytest.mark.slow

LIFT = SuiteConfig(name="robosuite_lift", camera_size=32, max_steps=12)


class RecordingPolicy:
    """Random actions; remembers reset calls (with the task's language) and what it saw."""

    def __init__(self) -> None:
        self.resets: list[tuple[int, int, str]] = []
        self.seen: list[tuple[dict, list[int]]] = []
        self.rng = np.random.default_rng(0)

    def reset(self, env_ids, tasks) -> None:
        self.resets += [(i, t.task_id, t.language) for i, t in zip(env_ids, tasks)]

    def act(self, obs, env_ids) -> np.ndarray:
        self.seen.append((obs, list(env_ids)))
        return self.rng.uniform(-0.5, 0.5, size=(len(env_ids), 7))


def test_lift_rollout_through_vector_interface() -> None:
    policy = RecordingPolicy()
    records = run_episodes(LIFT, policy, episodes_per_task=3, workers=2, record_frames=True)
    assert [(r.task_id, r.episode, r.init_index) for r in records] == [(0, 0, 0), (0, 1, 1), (0, 2, 2)]
    assert all(r.error is None and r.length == 12 and not r.success for r in records)
    assert all(r.frames.shape == (12, 32, 32, 3) and r.frames.dtype == np.uint8 for r in records)
    # both envs end at step 12; the third episode starts in the lower env id
    assert [(i, t) for i, t, _ in policy.resets] == [(0, 0), (1, 0), (0, 0)]
    assert {lang for _, _, lang in policy.resets} == {"lift the red cube"}
    obs, env_ids = policy.seen[0]
    assert env_ids == [0, 1]
    assert obs["agentview"].shape == (2, 32, 32, 3) and obs["agentview"].dtype == np.uint8
    assert obs["wrist"].shape == (2, 32, 32, 3)
    assert obs["state"].shape == (2, 8) and obs["state"].dtype == np.float32
    assert obs["agentview"].std() > 5, "camera images look blank"
    # gripper opened by the settle steps: finger qpos symmetric and open
    assert obs["state"][0, 6] > 0.01 and obs["state"][0, 7] < -0.01


def test_vector_env_step_structure() -> None:
    with VectorEnv(LIFT, 2) as venv:
        # the start-up check names the OpenGL implementation the workers render with
        assert venv.pool.renderer["backend"] == "egl" and venv.pool.renderer["vendor"]
        out = venv.reset([0, 1], [EpisodeSpec(0, 4, 0), EpisodeSpec(0, 5, 1)])
        assert out.error == [None, None] and len(set(out.init_digest)) == 2
        out = venv.step([1], np.zeros((1, 7)))
        assert out.obs["state"].shape == (1, 8) and out.success.tolist() == [False]
        with pytest.raises(AssertionError, match="actions must be"):
            venv.step([0, 1], np.zeros((1, 7)))


def test_init_states_do_not_depend_on_finishing_order() -> None:
    cfg = SuiteConfig(name="robosuite_lift", render=False)
    specs = episode_specs([0], 6)
    ordered = run_expert_episodes(cfg, episodes=specs, workers=1)
    shuffled_specs = list(specs)
    random.Random(3).shuffle(shuffled_specs)
    finished: list[int] = []
    shuffled = run_expert_episodes(cfg, episodes=shuffled_specs, workers=2,
                                   on_episode=lambda r: finished.append(r.episode))
    assert finished != [s.episode for s in specs], "episodes finished in the planned order"
    assert [r.init_digest for r in shuffled] == [r.init_digest for r in ordered]
    assert [r.init_index for r in shuffled] == list(range(6))
    assert len({r.init_digest for r in ordered}) == 6
    # the batched runner assigns the same initial scenes
    batched = run_episodes(SuiteConfig(name="robosuite_lift", render=False, max_steps=1),
                           ZeroPolicy(), episodes=shuffled_specs, workers=2)
    assert [r.init_digest for r in batched] == [r.init_digest for r in ordered]


def test_killed_worker_is_replaced_and_episode_recorded_crashed() -> None:
    cfg = SuiteConfig(name="robosuite_lift", render=False, max_steps=8, step_timeout_s=60)
    venv = VectorEnv(cfg, 2)
    killed: list[int] = []

    def kill_env0_at_step3(policy: ZeroPolicy, env_ids: list[int]) -> None:
        if not killed and 0 in env_ids and policy.steps[0] == 3:
            killed.append(venv.pids[0])
            os.kill(venv.pids[0], signal.SIGKILL)

    policy = ZeroPolicy(kill_env0_at_step3)

    try:
        records = run_episodes(cfg, policy, episodes_per_task=4, venv=venv)
        assert venv.pids[0] != killed[0] and venv.pool.restarts == 1
    finally:
        venv.close()
    failed = [r for r in records if r.error]
    assert len(failed) == 1 and "died" in failed[0].error and not failed[0].success
    assert failed[0].crashed and not any(r.crashed for r in records if r is not failed[0])  # infrastructure
    assert failed[0].episode == 0 and failed[0].length == 4
    assert all(r.error is None and r.length == 8 for r in records if r is not failed[0])
    assert len(records) == 4


def test_bench_envs_subcommand(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "eval" / "bench.py"
    out = tmp_path / "envs.json"
    subprocess.run([sys.executable, str(script), "envs", "--workers", "1", "2", "--steps", "3",
                    "--no-render", "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert [r["workers"] for r in result["results"]] == [1, 2]
    assert all(r["steps_per_s"] > 0 and r["timed_steps"] == 3 * r["workers"] for r in result["results"])
    assert result["results"][0]["speedup_vs_first"] == 1.0
