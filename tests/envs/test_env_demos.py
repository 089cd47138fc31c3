"""Fast tests of the LIBERO-layout demo writer and reader on a synthetic episode."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from avbr.envs import EpisodeRecord
from avbr.envs.demos import DemoReadOptions, DemoWriter, demo_keys, read_demo


def _record(steps: int, success: bool = True) -> EpisodeRecord:
    rng = np.random.default_rng(steps)
    data = {
        "agentview_rgb": rng.integers(0, 255, (steps, 8, 8, 3), dtype=np.uint8),
        "eye_in_hand_rgb": rng.integers(0, 255, (steps, 8, 8, 3), dtype=np.uint8),
        "ee_states": rng.normal(size=(steps, 6)),
        "gripper_states": rng.normal(size=(steps, 2)),
        "joint_states": rng.normal(size=(steps, 7)),
        "actions": rng.uniform(-1, 1, (steps, 7)),
        "states": rng.normal(size=(steps, 20)),
        "robot_states": rng.normal(size=(steps, 9)),
        "model_file": "<mujoco/>",
        "attrs": {"env_args": json.dumps({"type": 1, "env_name": "Lift", "env_kwargs": {}}),
                  "problem_info": json.dumps({"problem_name": "Lift", "domain_name": "robosuite",
                                              "language_instruction": "lift the red cube"}),
                  "bddl_file_name": ""},
    }
    return EpisodeRecord(task_id=0, init_index=steps, episode=0, success=success, length=steps,
                         data=data)


def test_writer_layout_and_reader_flip(tmp_path: Path) -> None:
    path = tmp_path / "Lift_demo.hdf5"
    writer = DemoWriter(path, "robosuite_lift", 0)
    first, second = _record(5), _record(7)
    writer.add(first)
    writer.add(second)
    with pytest.raises(ValueError, match="successful"):
        writer.add(_record(3, success=False))
    writer.close()
    with h5py.File(path, "r") as f:
        data = f["data"]
        for attr in ("env_args", "problem_info", "bddl_file_name", "num_demos", "total"):
            assert attr in data.attrs
        assert data.attrs["num_demos"] == 2 and data.attrs["total"] == 12
        demo = data["demo_1"]
        assert set(demo.keys()) == {"obs", "actions", "states", "robot_states", "rewards", "dones"}
        assert {"agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states",
                "joint_states"} <= set(demo["obs"].keys())
        assert demo["dones"][()].tolist() == [0] * 6 + [1]
        np.testing.assert_array_equal(demo["obs/agentview_rgb"][()], second.data["agentview_rgb"])
    assert demo_keys(path) == ["demo_0", "demo_1"]
    demo = read_demo(path, "demo_1")
    np.testing.assert_array_equal(demo.images["agentview"], second.data["agentview_rgb"][:, ::-1, ::-1])
    assert demo.language == "lift the red cube" and demo.actions.shape == (7, 7) and demo.init_index == 7
    np.testing.assert_array_equal(demo.state[:, :6], second.data["ee_states"].astype(np.float32))
    raw = read_demo(path, "demo_1", DemoReadOptions(flip_images=False))
    np.testing.assert_array_equal(raw.images["wrist"], second.data["eye_in_hand_rgb"])
