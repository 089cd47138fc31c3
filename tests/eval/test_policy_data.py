"""Demo files -> training arrays: task matching, missing-demo message, upright frames, pairs, the cache."""

import json

import numpy as np
import pytest
import torch

from avbr.adapters import Features
from avbr.envs import EpisodeRecord, TaskInfo
from avbr.envs.demos import DemoWriter
from avbr.eval.rollouts.policy_data import DemoConfig, DemosNotFoundError, FeatureSpec, find_demo_files, load_demos


class TopRowEncoder:
    """cls = [mean of prev's top row, mean of curr's top row] (red channel); counts encoded frames."""

    contract = type("C", (), {"describe": staticmethod(lambda: {"fake": 1})})()
    name, frames, autocast_bf16 = "top_row", "both", False  # the adapter settings the cache key reads

    def __init__(self):
        self.encoded = 0
        self.weights = "fake"

    def weights_hash(self):
        return self.weights

    def encode(self, prev, curr):
        self.encoded += len(curr)
        cls = torch.tensor(np.stack([prev[:, 0, :, 0].mean(1), curr[:, 0, :, 0].mean(1)], 1), dtype=torch.float32)
        return Features(cls=cls, patches=cls[:, None], grid=(1, 1))


def _write(path, language, steps=(5, 7), size=8):
    writer = DemoWriter(path, "fake_suite", 0)
    for n in steps:
        img = np.zeros((n, size, size, 3), np.uint8)
        img[:, -1, :, 0] = np.arange(n)[:, None] * 10  # bottom row as stored = top row once upright
        data = {"agentview_rgb": img, "eye_in_hand_rgb": img, "ee_states": np.ones((n, 6)),
                "gripper_states": np.full((n, 2), 2.0), "joint_states": np.zeros((n, 7)),
                "actions": np.tile(np.arange(7.0), (n, 1)), "states": np.zeros((n, 3)),
                "robot_states": np.zeros((n, 9)), "model_file": "",
                "attrs": {"env_args": json.dumps({"env_name": "Fake"}), "bddl_file_name": "",
                          "problem_info": json.dumps({"language_instruction": language})}}
        writer.add(EpisodeRecord(0, 0, 0, True, n, data=data))
    writer.close()


def test_find_by_name_or_language_and_missing_message(tmp_path):
    _write(tmp_path / "fake_suite" / "renamed_file.hdf5", "Lift the cube")
    _write(tmp_path / "fake_suite" / "c_demo.hdf5", "the BDDL wording differs")
    tasks = [TaskInfo("fake_suite", 0, "a", "lift the cube", None), TaskInfo("fake_suite", 1, "b", "stack", None),
             TaskInfo("fake_suite", 2, "c", "task c", None)]
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=None)
    found = find_demo_files(cfg, "fake_suite", [tasks[0], tasks[2]])
    assert found[0].name == "renamed_file.hdf5" and found[2].name == "c_demo.hdf5"
    with pytest.raises(DemosNotFoundError, match=r"make_demos suite=fake_suite n_per_task=50 .*'tasks=\[1\]'"):
        find_demo_files(cfg, "fake_suite", tasks)


def test_arrays_upright_pairs_and_cache(tmp_path):
    path = tmp_path / "fake_suite" / "t.hdf5"
    _write(path, "lift")
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), max_per_task=2)
    enc = TopRowEncoder()
    spec = FeatureSpec(readout="cls", gap=2)
    demos, info = load_demos(cfg, {3: path}, [3], enc, {"name": "fake"}, spec, camera_size=8)
    assert [len(d.actions) for d in demos] == [5, 7] and info["encoded_files"] == 1
    d = demos[1]
    # Upright top row holds 10*t; prev is o_{max(t-2, 0)}.
    np.testing.assert_array_equal(d.features[:, 1], 10 * np.arange(7))
    np.testing.assert_array_equal(d.features[:, 0], 10 * np.maximum(np.arange(7) - 2, 0))
    np.testing.assert_array_equal(d.state[0], [1, 1, 1, 1, 1, 1, 2, 2])
    assert d.task_index == 0 and d.actions.shape == (7, 7)
    encoded = enc.encoded
    again, info = load_demos(cfg, {3: path}, [3], enc, {"name": "fake"}, spec, camera_size=8)
    assert info["cache_hits"] == 1 and enc.encoded == encoded
    np.testing.assert_array_equal(again[1].features, d.features)
    np.testing.assert_array_equal(again[1].state, d.state)
    np.testing.assert_array_equal(again[1].actions, d.actions)
    # The one project cache: an entry folder per key (adapters.cache.FeatureCache), no other files.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [json.loads(p.read_text())["key"]
                                                               for p in (tmp_path / "cache").glob("*/meta.json")]
    # A different gap, readout, demo count, file content or weights is a different cache entry.
    for change in ("gap", "readout", "demos", "file", "weights"):
        before = enc.encoded
        other_spec = FeatureSpec(readout="cls" if change != "readout" else "mean", gap=1 if change == "gap" else 2)
        other_cfg = DemoConfig(dir=cfg.dir, cache_dir=cfg.cache_dir, max_per_task=1 if change == "demos" else 2)
        if change == "file":
            _write(path, "lift", steps=(5, 8))
        if change == "weights":
            enc.weights = "changed"
        _, info = load_demos(other_cfg, {3: path}, [3], enc, {"name": "fake"}, other_spec, camera_size=8)
        assert info["encoded_files"] == 1 and enc.encoded > before, change
    with pytest.raises(ValueError, match="camera_size=8"):
        load_demos(DemoConfig(dir=str(tmp_path), cache_dir=None), {3: path}, [3], enc, {}, spec, camera_size=16)
