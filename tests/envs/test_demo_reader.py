"""The one demo reader: step alignment of official LIBERO files, no-op filtering, image convention,
robomimic naming, and unreadable or wrong files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from libero_demo_fixture import CAP_INDEX, raw_frame, write_official_demo

from avbr.envs.demos import (DemoFile, DemoFileError, DemoReadOptions, DemoTaskMismatchError, check_task,
                             keep_non_noops, read_demo)
from avbr.envs.observations import policy_frames


def _raw_index(demo, camera: str = "agentview") -> np.ndarray:
    """Raw state index encoded in each returned frame (green channel)."""
    return demo.images[camera][:, 0, 0, 1].astype(int)


def test_official_file_pairs_each_observation_with_the_next_action(tmp_path: Path) -> None:
    n = 20
    path = write_official_demo(tmp_path / "soup_demo.hdf5", (n,))
    with DemoFile(path) as f:
        assert f.info.alignment == "obs_after_action"
        assert f.info.suite == "libero_object" and f.info.task == "pick_up_the_soup_and_place_it_in_the_basket"
        with h5py.File(path) as h:  # as stored: row i holds o_{i+6} next to a_{i+5}
            assert h["data/demo_0/obs/agentview_rgb"][0, 0, 0, 1] == CAP_INDEX + 1
            assert h["data/demo_0/actions"][0, 0] == CAP_INDEX
        demo = f.read("demo_0", DemoReadOptions(drop_noops=False))
    j = _raw_index(demo)
    # Aligned step t: the observation of s_j, then a_j, with the state s_j: all the same raw j.
    np.testing.assert_array_equal(j, np.arange(CAP_INDEX + 1, n))
    np.testing.assert_array_equal(demo.actions[:, 0], j)
    np.testing.assert_array_equal(demo.states[:, 0], j)
    np.testing.assert_array_equal(demo.state[:, 0], j)  # ee_states of the same observation
    np.testing.assert_array_equal(demo.robot_states[:, 0], j)
    assert demo.dones[-1] == 1 and demo.dones[:-1].sum() == 0
    assert len(demo.actions) == n - CAP_INDEX - 1 == len(demo.images["wrist"])


def test_avbr_and_robomimic_files_are_already_before_the_action(tmp_path: Path) -> None:
    n = 9
    path = tmp_path / "robomimic.hdf5"
    with h5py.File(path, "w") as f:  # robomimic dataset_states_to_obs.py naming, no problem_info
        f.create_group("data").attrs["env_args"] = json.dumps({"env_name": "Lift"})
        g = f.create_group("data/demo_0")
        g.create_dataset("obs/agentview_image", data=np.stack([raw_frame(j) for j in range(n)]))
        g.create_dataset("obs/robot0_eef_pos", data=np.tile(np.arange(n, dtype=float)[:, None], (1, 3)))
        g.create_dataset("obs/robot0_eef_quat", data=np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)))
        g.create_dataset("obs/robot0_gripper_qpos", data=np.ones((n, 2)))
        actions = np.zeros((n, 7))
        actions[:, 0] = np.arange(n) + 1
        g.create_dataset("actions", data=actions)
    demo = read_demo(path, "demo_0")
    assert DemoFile(path).info.alignment == "obs_before_action" and "wrist" not in demo.images
    np.testing.assert_array_equal(_raw_index(demo), np.arange(n))
    np.testing.assert_array_equal(demo.actions[:, 0], np.arange(n) + 1)
    np.testing.assert_array_equal(demo.state[:, [0, 3, 6]], np.stack([np.arange(n), np.zeros(n), np.ones(n)], 1))


def test_noop_rule_is_openvlas(tmp_path: Path) -> None:
    # OpenVLA's is_noop: ||a[:6]|| < 1e-4 and the gripper equals the previous *kept* action's;
    # the first action: the norm test alone.
    a = np.zeros((6, 7))
    a[:, 6] = [-1, -1, 1, 1, 1, -1]
    a[1, 0] = 0.5
    a[4, 0] = 5e-5  # below the threshold
    np.testing.assert_array_equal(keep_non_noops(a), [False, True, True, False, False, True])

    n = 20
    noops = {CAP_INDEX + 1: -1.0, 8: -1.0, 9: -1.0, 12: 1.0, 13: 1.0}
    path = write_official_demo(tmp_path / "soup_demo.hdf5", (n,), noops=noops)
    demo = read_demo(path, "demo_0")
    # 6: first aligned step, arm still -> dropped; 8, 9: still, gripper unchanged -> dropped;
    # 12: still but the gripper closes -> kept; 13: still, gripper unchanged -> dropped.
    expected = [j for j in range(CAP_INDEX + 1, n) if j not in (6, 8, 9, 13)]
    np.testing.assert_array_equal(_raw_index(demo), expected)
    np.testing.assert_array_equal(demo.states[:, 0], expected)
    assert demo.actions[list(expected).index(12), 6] == 1.0


@pytest.mark.parametrize("flip", [True, False])
def test_frames_go_through_policy_frames_in_both_conventions(tmp_path: Path, flip: bool) -> None:
    path = write_official_demo(tmp_path / "soup_demo.hdf5", (12,))
    demo = read_demo(path, "demo_0", DemoReadOptions(flip_images=flip, drop_noops=False))
    expected = np.stack([policy_frames(raw_frame(j), flip) for j in range(CAP_INDEX + 1, 12)])
    np.testing.assert_array_equal(demo.images["agentview"], expected)
    assert demo.images["agentview"][0, -1 if flip else 0, -1 if flip else 0, 0] == 255
    # A file in robosuite's "opencv" convention (its upright view [::-1]) reads the same.
    opencv = tmp_path / "opencv.hdf5"
    with h5py.File(path) as src, h5py.File(opencv, "w") as dst:
        src.copy("data", dst)
        dst["data"].attrs["macros_image_convention"] = "opencv"
        for cam in ("agentview_rgb", "eye_in_hand_rgb"):
            frames = dst[f"data/demo_0/obs/{cam}"][()]
            del dst[f"data/demo_0/obs/{cam}"]
            dst[f"data/demo_0/obs/{cam}"] = frames[:, ::-1]
    again = read_demo(opencv, "demo_0", DemoReadOptions(flip_images=flip, drop_noops=False))
    np.testing.assert_array_equal(again.images["agentview"], expected)


def test_corrupt_truncated_and_foreign_files_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage_demo.hdf5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DemoFileError, match="garbage_demo.hdf5"):
        DemoFile(garbage)
    good = write_official_demo(tmp_path / "soup_demo.hdf5", (30, 30), size=32)
    truncated = tmp_path / "truncated_demo.hdf5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DemoFileError, match="truncated_demo.hdf5.*corrupt or truncated"):
        read_demo(truncated, "demo_1")
    foreign = tmp_path / "foreign.hdf5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(DemoFileError, match="foreign.hdf5: no 'data' group"):
        DemoFile(foreign)


def test_check_task_names_both_sides(tmp_path: Path) -> None:
    path = write_official_demo(tmp_path / "x_demo.hdf5", (10,), suite="libero_object", task="pick_up_the_soup")
    with DemoFile(path) as f:
        check_task(f.info, "libero_object", "pick_up_the_soup")
        with pytest.raises(DemoTaskMismatchError, match=r"suite 'libero_object', not 'libero_spatial'.*"
                                                         r"task 'pick_up_the_soup', not 'put_the_bowl'"):
            check_task(f.info, "libero_spatial", "put_the_bowl")
