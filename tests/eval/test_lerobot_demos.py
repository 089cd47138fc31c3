"""``eval/libero.py``'s demos from a LeRobotDataset (``demos.lerobot``): task matching, frames,
cameras, orientation, state/action alignment and episode boundaries through the evaluation's own
path (``find_demos`` -> ``load_demos``), and the held-out check of LeRobot episodes.

The datasets are the independent fixtures of ``tests/data/lerobot_fixtures.py`` (written the way
LeRobot's own writers lay them out), whose frames carry an index pattern.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from lerobot_fixtures import (  # noqa: E402
    CAMERA_ID, LENGTHS, OPENPI_KEYS, TASKS, action, decode, pattern, state, write_v21, write_v30)

from avbr.adapters import Features  # noqa: E402
from avbr.data.lerobot_writer import LeRobotWriter, VideoEncoding  # noqa: E402
from avbr.envs import TaskInfo  # noqa: E402
from avbr.envs.config import SuiteConfig  # noqa: E402
from avbr.envs.scenes import HELDOUT_SEED, HELDOUT_SEED_BASE  # noqa: E402
from avbr.eval.rollouts.demo_sets import UNRECORDED, LeRobotDemos  # noqa: E402
from avbr.eval.rollouts.demo_supply import find_demos  # noqa: E402
from avbr.eval.rollouts.heldout import EvalScenesInDemosError, check_heldout  # noqa: E402
from avbr.eval.rollouts.policy_data import DemoConfig, DemosNotFoundError, FeatureSpec, load_demos  # noqa: E402


class PatternEncoder:
    """cls = the decoded ``(t, episode, camera, upright)`` of ``prev`` then ``curr`` (8 values)."""

    contract = type("C", (), {"describe": staticmethod(lambda: {"fake": 1})})()
    name, frames, autocast_bf16 = "pattern", "both", False

    def weights_hash(self):
        return "pattern"

    def encode(self, prev, curr):
        rows = [[*decode(p), *decode(c)] for p, c in zip(prev, curr)]
        cls = torch.tensor(rows, dtype=torch.float32)
        return Features(cls=cls, patches=cls[:, None], grid=(1, 1))


TASK_INFOS = [TaskInfo("libero_object", 0, "bowl", "Put the bowl on the plate ", None),
              TaskInfo("libero_object", 1, "drawer", "open the drawer", None)]


@pytest.mark.parametrize("layout", ["v30_video", "v21_openpi_images"])
@pytest.mark.parametrize("flip", [True, False])
def test_lerobot_demos_through_the_eval_path(tmp_path, layout, flip):
    if layout == "v30_video":
        root, keys = write_v30(tmp_path / "ds"), "lerobot_libero"
    else:
        root, keys = write_v21(tmp_path / "ds", keys=OPENPI_KEYS, images=True), "openpi_libero"
    cfg = DemoConfig(lerobot=str(root), lerobot_keys=keys, cache_dir=None, drop_noops=True)
    suite = SuiteConfig(name="libero_object", camera_size=64, flip_images=flip)
    found = find_demos(cfg, suite, TASK_INFOS)
    assert [found[0].count(), found[1].count()] == [2, 1]  # task 0: episodes 0 and 2; task 1: episode 1
    gap = 2
    spec = FeatureSpec(cameras=("agentview", "wrist"), gap=gap)
    demos, info = load_demos(cfg, found, [0, 1], PatternEncoder(), {}, spec, camera_size=64, flip_images=flip)
    assert info["tasks"]["0"]["steps"] == LENGTHS[0] + LENGTHS[2]
    for demo, episode in zip(demos, (0, 2, 1)):
        n = LENGTHS[episode]
        assert demo.features.shape == (n, 16) and demo.task_index == (episode == 1)
        for c, camera in enumerate(("agentview", "wrist")):
            f = demo.features[:, 8 * c: 8 * c + 8]
            t = np.arange(n)
            np.testing.assert_array_equal(f[:, 0], np.maximum(t - gap, 0))  # prev = o_{max(t-k, 0)}
            np.testing.assert_array_equal(f[:, 4], t)                        # curr = o_t, every frame in order
            assert (f[:, [1, 5]] == episode).all() and (f[:, [2, 6]] == CAMERA_ID[camera]).all()
            assert (f[:, [3, 7]] == flip).all()  # upright exactly when flip_images (the datasets' view)
        np.testing.assert_allclose(demo.state, np.stack([state(episode, i) for i in range(n)]))
        np.testing.assert_allclose(demo.actions, np.stack([action(episode, i) for i in range(n)]))  # a_t with o_t


def test_missing_task_names_the_dataset_tasks(tmp_path):
    root = write_v30(tmp_path / "ds")
    cfg = DemoConfig(lerobot=str(root), cache_dir=None)
    other = TaskInfo("libero_object", 2, "soup", "pick up the soup", None)
    with pytest.raises(DemosNotFoundError) as err:
        find_demos(cfg, SuiteConfig(name="libero_object"), [TASK_INFOS[0], other])
    msg = str(err.value)
    assert "no episodes for 1 task(s)" in msg and "pick up the soup" in msg and TASKS[1] in msg
    assert "format=lerobot" in msg


def _noop_free(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 7)).astype(np.float32)


def test_heldout_check_reads_lerobot_episode_starts(tmp_path, libero_env_var):
    from avbr.envs.libero_env import load_init_states

    states = load_init_states("libero_object", 0)  # [50, S]
    other = states[0].copy()
    other[5] += 0.01
    root = tmp_path / "ds"
    writer = LeRobotWriter(root, fps=20, video=VideoEncoding(codec="libx264"))
    frames = {role: np.stack([pattern(i, 0, cid) for i in range(3)]) for role, cid in CAMERA_ID.items()}
    for seed, start in ((HELDOUT_SEED_BASE, other), (HELDOUT_SEED_BASE + 1, states[3])):
        writer.add_episode(frames, np.zeros((3, 8)), _noop_free(3, seed), "task zero",
                           extra={"avbr/init_source": HELDOUT_SEED, "avbr/init_seed": seed,
                                  "avbr/init_scene_state": start.tolist()})
    writer.close()
    demos = LeRobotDemos(str(root)).for_task("Task Zero")
    starts = demos.starts()
    assert [(s.source, s.seed) for s in starts] == [(HELDOUT_SEED, HELDOUT_SEED_BASE), (HELDOUT_SEED, HELDOUT_SEED_BASE + 1)]
    suite = SuiteConfig(name="libero_object")
    with pytest.raises(EvalScenesInDemosError, match=r"1 of 2 demos .*ds:task zero:episode_000001 = init state 3"):
        check_heldout(suite, {0: demos}, list(range(10)))
    assert check_heldout(suite, {0: demos}, [0, 1, 2])["overlapping_demos"] == 0

    # A third-party conversion stores no simulator state: counted as unverified, not refused.
    third = LeRobotDemos(str(write_v30(tmp_path / "third"))).for_task(TASKS[0])
    assert {s.source for s in third.starts()} == {UNRECORDED}
    report = check_heldout(suite, {0: third}, [0, 1, 2])
    assert report["unverified_demos"] == 2 and report["overlapping_demos"] == 0
