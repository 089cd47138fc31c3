"""Demo files -> training arrays: task matching, missing-demo message, frames, pairs, the cache; official
LIBERO files through the eval path; wrong, corrupt and unrelated unreadable files."""

import json

import numpy as np
import pytest
import torch

from avbr.adapters import Features
from avbr.envs import EpisodeRecord, TaskInfo
from avbr.envs.demos import DemoFileError, DemoTaskMismatchError, DemoWriter
from avbr.eval.rollouts.demo_sets import Hdf5Demos
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


def _write(path, language, steps=(5, 7), size=8, task_id=0, suite="fake_suite"):
    writer = DemoWriter(path, suite, task_id)
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
    _write(tmp_path / "fake_suite" / "c_demo.hdf5", "the BDDL wording differs", task_id=2)
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
    demos, info = load_demos(cfg, {3: Hdf5Demos(path)}, [3], enc, {"name": "fake"}, spec, camera_size=8, flip_images=True)
    assert [len(d.actions) for d in demos] == [5, 7] and info["encoded_files"] == 1
    d = demos[1]
    # Upright top row holds 10*t; prev is o_{max(t-2, 0)}.
    np.testing.assert_array_equal(d.features[:, 1], 10 * np.arange(7))
    np.testing.assert_array_equal(d.features[:, 0], 10 * np.maximum(np.arange(7) - 2, 0))
    np.testing.assert_array_equal(d.state[0], [1, 1, 1, 1, 1, 1, 2, 2])
    assert d.task_index == 0 and d.actions.shape == (7, 7)
    encoded = enc.encoded
    again, info = load_demos(cfg, {3: Hdf5Demos(path)}, [3], enc, {"name": "fake"}, spec, camera_size=8, flip_images=True)
    assert info["cache_hits"] == 1 and enc.encoded == encoded
    np.testing.assert_array_equal(again[1].features, d.features)
    np.testing.assert_array_equal(again[1].state, d.state)
    np.testing.assert_array_equal(again[1].actions, d.actions)
    # The one project cache: an entry folder per key (adapters.cache.FeatureCache), no other files.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [json.loads(p.read_text())["key"]
                                                               for p in (tmp_path / "cache").glob("*/meta.json")]
    # A different gap, readout, demo count, image convention, file content or weights is a
    # different cache entry.
    for change in ("gap", "readout", "demos", "flip", "file", "weights"):
        before = enc.encoded
        other_spec = FeatureSpec(readout="cls" if change != "readout" else "mean", gap=1 if change == "gap" else 2)
        other_cfg = DemoConfig(dir=cfg.dir, cache_dir=cfg.cache_dir, max_per_task=1 if change == "demos" else 2)
        if change == "file":
            _write(path, "lift", steps=(5, 8))
        if change == "weights":
            enc.weights = "changed"
        _, info = load_demos(other_cfg, {3: Hdf5Demos(path)}, [3], enc, {"name": "fake"}, other_spec, camera_size=8,
                             flip_images=change != "flip")
        assert info["encoded_files"] == 1 and enc.encoded > before, change
    with pytest.raises(ValueError, match="camera_size=8"):
        load_demos(DemoConfig(dir=str(tmp_path), cache_dir=None), {3: Hdf5Demos(path)}, [3], enc, {}, spec, camera_size=16, flip_images=True)


# --- official LIBERO files, wrong files, unreadable files -----------------------------------------

LIFT = TaskInfo("robosuite_lift", 0, "Lift", "lift the red cube", None)


class FrameRecorder(TopRowEncoder):
    """Keeps every ``curr`` frame it encodes: the frames the policy head trains on."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def encode(self, prev, curr):
        self.seen.append(np.array(curr))
        return super().encode(prev, curr)


@pytest.mark.parametrize("flip", [True, False])
def test_official_file_through_the_eval_path(tmp_path, flip):
    from libero_demo_fixture import CAP_INDEX, raw_frame, write_official_demo

    from avbr.envs.observations import policy_frames

    task = TaskInfo("libero_object", 4, "pick_up_the_soup", "pick up the soup", 50)
    write_official_demo(tmp_path / "libero_object" / "pick_up_the_soup_demo.hdf5", (16,), task="pick_up_the_soup",
                        noops={9: -1.0})
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=None)
    files = {t: Hdf5Demos(path) for t, path in find_demo_files(cfg, "libero_object", [task]).items()}
    enc = FrameRecorder()
    demos, _ = load_demos(cfg, files, [4], enc, {}, FeatureSpec(), camera_size=8, flip_images=flip)
    kept = [j for j in range(CAP_INDEX + 1, 16) if j != 9]  # re-paired, OpenVLA no-op dropped
    np.testing.assert_array_equal(np.concatenate(enc.seen), np.stack([policy_frames(raw_frame(j), flip) for j in kept]))
    np.testing.assert_array_equal(demos[0].actions[:, 0], kept)  # a_j with the observation of s_j
    np.testing.assert_array_equal(demos[0].state[:, 0], kept)


def test_demo_file_of_another_suite_or_task_is_refused(tmp_path):
    from libero_demo_fixture import write_official_demo

    # A libero_object file renamed to a libero_spatial task's name.
    spatial = TaskInfo("libero_spatial", 0, "put_the_bowl_on_the_plate", "put the bowl on the plate", 50)
    write_official_demo(tmp_path / "libero_spatial" / "put_the_bowl_on_the_plate_demo.hdf5", (10,),
                        suite="libero_object", task="pick_up_the_soup")
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=None)
    with pytest.raises(DemoTaskMismatchError, match=r"put_the_bowl_on_the_plate_demo.hdf5.*suite 'libero_object', "
                                                     r"not 'libero_spatial'.*task 'pick_up_the_soup', not "
                                                     r"'put_the_bowl_on_the_plate'"):
        find_demo_files(cfg, "libero_spatial", [spatial])
    # A scripted robosuite file of another suite, found by its language.
    _write(tmp_path / "robosuite_lift" / "renamed.hdf5", "lift the red cube")
    with pytest.raises(DemoTaskMismatchError, match="suite 'fake_suite', not 'robosuite_lift'"):
        find_demo_files(cfg, "robosuite_lift", [LIFT])


def test_corrupt_file_of_an_evaluated_task_names_it(tmp_path):
    path = tmp_path / "robosuite_lift" / "Lift_demo.hdf5"
    _write(path, "lift the red cube", suite="robosuite_lift")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=None)
    with pytest.raises(DemoFileError, match=r"Lift_demo\.hdf5.*corrupt or truncated"):
        find_demo_files(cfg, "robosuite_lift", [LIFT])


def test_corrupt_file_of_another_task_blocks_nothing(tmp_path, capsys):
    from avbr.envs import SuiteConfig
    from avbr.eval.rollouts.evaluate import EvalConfig, evaluate

    folder = tmp_path / "robosuite_lift"
    _write(folder / "Lift_demo.hdf5", "lift the red cube", suite="robosuite_lift")
    for name in ("Stack_demo.hdf5", "aaa_demo.hdf5"):
        (folder / name).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an hdf5 signature, then nothing
    cfg = DemoConfig(dir=str(tmp_path), cache_dir=None)
    assert find_demo_files(cfg, "robosuite_lift", [LIFT]) == {0: folder / "Lift_demo.hdf5"}
    # Found by language (the name does not match): the unreadable files are skipped, not fatal.
    (folder / "Lift_demo.hdf5").rename(folder / "lift_renamed.hdf5")
    assert find_demo_files(cfg, "robosuite_lift", [LIFT]) == {0: folder / "lift_renamed.hdf5"}
    # The dry run lists the file.
    run = EvalConfig(suite=SuiteConfig(name="robosuite_lift"), encoder={"name": "two_stream", "source": "random"},
                     demos=cfg, dry_run=True, out_dir="run")
    evaluate(run, tmp_path / "run")
    assert f"demos of task 0: {folder / 'lift_renamed.hdf5'}" in capsys.readouterr().out
    # Nothing usable: the message names the skipped files.
    (folder / "lift_renamed.hdf5").unlink()
    with pytest.raises(DemosNotFoundError, match=r"2 unreadable file\(s\) skipped: Stack_demo.hdf5"):
        find_demo_files(cfg, "robosuite_lift", [LIFT])

