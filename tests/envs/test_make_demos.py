"""Slow test: ``make_demos`` writes LIBERO-layout files that LIBERO's own dataset code reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from avbr.envs import EpisodeSpec, SuiteConfig, run_episodes
from avbr.envs.demos import DemoReadOptions, demo_keys, read_demo
from avbr.envs.scenes import HELDOUT_SEED, HELDOUT_SEED_BASE
from env_policies import ZeroPolicy

pytestmark = pytest.mark.slow


def test_make_demos_robosuite_lift_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "demos"
    subprocess.run(
        [sys.executable, "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=2",
         "workers=2", f"out={out}", "suite.camera_size=64", f"hydra.run.dir={tmp_path / 'hydra'}"],
        check=True, cwd=tmp_path)
    path = out / "robosuite_lift" / "Lift_demo.hdf5"
    summary = json.loads((out / "robosuite_lift" / "summary.json").read_text())
    assert summary["tasks"][0]["written"] == 2

    with h5py.File(path, "r") as f:
        data = f["data"]
        for attr in ("env_args", "problem_info", "bddl_file_name"):
            assert attr in data.attrs
        assert json.loads(data.attrs["env_args"])["env_name"] == "Lift"
        for demo in demo_keys(path):
            group = data[demo]
            steps = group["actions"].shape[0]
            assert group["actions"].shape == (steps, 7)
            assert group["obs/agentview_rgb"].shape == (steps, 64, 64, 3)
            assert group["obs/eye_in_hand_rgb"].dtype == np.uint8
            assert group["obs/ee_states"].shape == (steps, 6)
            assert group["obs/gripper_states"].shape == (steps, 2)
            assert group["obs/joint_states"].shape == (steps, 7)
            assert group["robot_states"].shape == (steps, 9)
            assert group["states"].shape[0] == steps
            assert group["dones"][-1] == 1 and group["rewards"][()].sum() == 1

    # LIBERO's own loader (robomimic SequenceDataset underneath) reads the file.
    from avbr.envs.libero_assets import libero_package_dir

    assert libero_package_dir().is_dir()
    from libero.lifelong.datasets import get_dataset

    dataset, shape_meta = get_dataset(
        str(path), {"rgb": ["agentview_rgb", "eye_in_hand_rgb"],
                    "low_dim": ["gripper_states", "joint_states", "ee_states"]}, seq_len=10)
    assert shape_meta["ac_dim"] == 7 and shape_meta["all_shapes"]["agentview_rgb"] == [3, 64, 64]
    item = dataset[0]
    assert item["obs"]["agentview_rgb"].shape == (10, 3, 64, 64) and item["actions"].shape == (10, 7)

    # Demos start from held-out scenes (seeds from HELDOUT_SEED_BASE), and say so.
    with h5py.File(path, "r") as f:
        starts = sorted((f["data"][k].attrs["init_source"], int(f["data"][k].attrs["init_seed"]))
                        for k in demo_keys(path))
    assert starts == [(HELDOUT_SEED, HELDOUT_SEED_BASE), (HELDOUT_SEED, HELDOUT_SEED_BASE + 1)]
    assert summary["init_source"] == HELDOUT_SEED and summary["tasks"][0]["collisions"] == 0

    # Stored images are upside down like the official files; read_demo converts them like rollouts,
    # identical to what the env gives a policy on the first step of the same (held-out) scene.
    options = DemoReadOptions(drop_noops=False)
    key = next(k for k in demo_keys(path) if read_demo(path, k, options).init_index == HELDOUT_SEED_BASE)
    demo = read_demo(path, key, options)
    records = run_episodes(SuiteConfig(name="robosuite_lift", camera_size=64, max_steps=1),
                           ZeroPolicy(), record_frames=True,
                           episodes=[EpisodeSpec(task_id=0, init_index=HELDOUT_SEED_BASE, episode=0,
                                                 source=HELDOUT_SEED)])
    np.testing.assert_array_equal(demo.images["agentview"][0], records[0].frames[0])
    raw = read_demo(path, key, DemoReadOptions(flip_images=False, drop_noops=False))
    np.testing.assert_array_equal(raw.images["agentview"][0], records[0].frames[0][::-1, ::-1])


def test_make_demos_libero_task_starts_from_held_out_scenes(tmp_path: Path, libero_env_var) -> None:
    from avbr.envs.libero_env import load_init_states
    from avbr.envs.make_demos import MakeDemosConfig, make_demos
    from avbr.envs.scenes import matching_states

    summary = make_demos(MakeDemosConfig(suite=SuiteConfig(name="libero_object", camera_size=32), n_per_task=1,
                                         workers=1, out=str(tmp_path), tasks=[0], progress=False))
    task = summary["tasks"][0]
    assert task["attempted"] == 1 and task["collisions"] == 0
    assert task["written"] == 1, task["errors"]  # the expert solves the held-out scene
    init_states = load_init_states("libero_object", 0)
    with h5py.File(task["file"], "r") as f:
        attrs = f["data/demo_0"].attrs
        assert (attrs["init_source"], int(attrs["init_seed"])) == (HELDOUT_SEED, HELDOUT_SEED_BASE)
        assert matching_states(attrs["init_scene_state"], init_states) == []
        assert matching_states(f["data/demo_0/states"][0], init_states) == []
