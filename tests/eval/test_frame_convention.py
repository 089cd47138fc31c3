"""Slow test on a real robosuite Lift env: for both ``suite.flip_images`` settings, the frames a
policy head trains on (a scripted demo written to a demo file and read back through the
evaluation's own path, ``find_demos`` -> ``load_demos``) equal the frames it sees in rollouts
from the same simulator states, and both are converted by ``observations.policy_frames``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avbr.adapters import Features  # before any renderer starts: importing it later can crash with EGL up
from avbr.envs import EpisodeSpec, SuiteConfig, TaskInfo, observations
from avbr.envs.demos import DemoWriter
from avbr.envs.worker import EpisodeRunner
from avbr.eval.rollouts.demo_supply import find_demos
from avbr.eval.rollouts.policy_data import DemoConfig, FeatureSpec, load_demos

pytestmark = pytest.mark.slow

STEPS = 8  # rollout steps compared


class FrameRecorder:
    """A stand-in encoder that keeps every ``curr`` frame it is given (what the head trains on)."""

    contract = type("C", (), {"describe": staticmethod(lambda: {"recorder": 1})})()

    def __init__(self) -> None:
        self.seen: dict[str, list[np.ndarray]] = {}
        self.camera = ""

    def weights_hash(self) -> str:
        return "recorder"

    def encode(self, prev, curr):
        self.seen.setdefault(self.camera, []).append(np.array(curr))
        cls = torch.zeros(len(curr), 1)
        return Features(cls=cls, patches=cls[:, None], grid=(1, 1))


@pytest.fixture(scope="module")
def lift_demo(tmp_path_factory) -> Path:
    """One successful scripted Lift episode, written by the demo writer (frames as rendered)."""
    out = tmp_path_factory.mktemp("demos")
    runner = EpisodeRunner(SuiteConfig(name="robosuite_lift", camera_size=32))
    try:
        record = runner.expert(EpisodeSpec(task_id=0, init_index=3, episode=0), record=True)
    finally:
        runner.drop_env()
    assert record.success, "the scripted Lift expert failed; the fixture needs one successful demo"
    writer = DemoWriter(out / "robosuite_lift" / "Lift_demo.hdf5", "robosuite_lift", 0)
    writer.add(record)
    writer.close()
    return out


@pytest.mark.parametrize("flip", [True, False])
def test_demo_frames_equal_rollout_frames(lift_demo: Path, flip: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    convert = observations.policy_frames

    def spy(frames: np.ndarray, flip_images: bool) -> np.ndarray:
        calls["n"] += 1
        assert flip_images is flip
        return convert(frames, flip_images)

    monkeypatch.setattr(observations, "policy_frames", spy)
    suite = SuiteConfig(name="robosuite_lift", camera_size=32, flip_images=flip)

    # Training frames: the eval path (no-op filter off so demo step t is rollout step t).
    cfg = DemoConfig(dir=str(lift_demo), cache_dir=None, drop_noops=False)
    files = find_demos(cfg, suite, [TaskInfo("robosuite_lift", 0, "Lift", "lift the red cube", None)])
    encoder = FrameRecorder()
    per_camera = {}
    for camera in ("agentview", "wrist"):
        encoder.camera = camera
        demos, _ = load_demos(cfg, files, [0], encoder, {}, FeatureSpec(cameras=(camera,)), suite.camera_size,
                              flip_images=flip)
        per_camera[camera] = np.concatenate(encoder.seen[camera])
    assert calls["n"] >= 2
    actions = demos[0].actions

    # Rollout frames: the worker's episode protocol from the same init state, replaying the actions.
    calls["n"] = 0
    runner = EpisodeRunner(suite)
    try:
        obs, _ = runner.start(EpisodeSpec(task_id=0, init_index=3, episode=0))
        for t in range(STEPS):
            for camera in ("agentview", "wrist"):
                np.testing.assert_array_equal(per_camera[camera][t], obs[camera], err_msg=f"{camera} step {t}")
            obs, _ = runner.step(actions[t])
    finally:
        runner.drop_env()
    assert calls["n"] == 2 * (STEPS + 1)  # two cameras per observation
    # The two settings really differ: a 180-degree rotation of the same frame.
    first = per_camera["agentview"][0]
    assert not np.array_equal(first, first[::-1, ::-1])
