"""The held-out check: demos whose first scene is an evaluation init state stop the run.

LIBERO: the real init states of libero_object task 0 (offline asset fixture). robosuite Lift:
real demos from ``make_demos`` and simulated evaluation scenes (slow).
"""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from avbr.envs.config import SuiteConfig
from avbr.envs.scenes import HELDOUT_SEED_BASE, matching_states
from avbr.eval.rollouts.demo_sets import Hdf5Demos
from avbr.eval.rollouts.heldout import EvalScenesInDemosError, check_heldout


def _file(path: Path, demos: list[dict]) -> Path:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, demo in enumerate(demos):
            group = data.create_group(f"demo_{i}")
            group.create_dataset("states", data=demo.pop("states"))
            for key, value in demo.items():
                group.attrs[key] = value
    return path


def test_matching_states_ignores_time_and_other_models():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    cands = np.array([[5.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.01]])
    assert matching_states(a, cands) == [0]
    assert matching_states(a, np.zeros((2, 7))) == []


def test_libero_overlaps_are_found_and_stop_the_run(tmp_path, libero_env_var):
    from avbr.envs.libero_env import load_init_states

    states = load_init_states("libero_object", 0)  # [50, S]
    other = states[0].copy()
    other[5] += 0.01  # a different scene (one coordinate 1 cm away)
    path = _file(tmp_path / "task0_demo.hdf5", [
        {"states": states[:1] + 0.5, "init_source": "heldout_seed", "init_seed": HELDOUT_SEED_BASE,
         "init_scene_state": other},
        {"states": states[:1] + 0.5, "init_source": "heldout_seed", "init_seed": HELDOUT_SEED_BASE + 1,
         "init_scene_state": states[3]},                    # claims held out, but is init state 3
        {"states": states[:1] + 0.5, "avbr_init_index": 4},  # an AVBR file from before held-out scenes
        {"states": states[7:8]},                             # no attributes (official layout): states[0]
    ])
    assert [s.source for s in Hdf5Demos(path).starts()] == ["heldout_seed", "heldout_seed", "eval_init_state", "unrecorded"]
    suite = SuiteConfig(name="libero_object")
    with pytest.raises(EvalScenesInDemosError) as err:
        check_heldout(suite, {0: Hdf5Demos(path)}, list(range(10)))
    msg = str(err.value)
    assert "3 of 4 demos start from evaluation init states" in msg and "task0_demo.hdf5:demo_1 = init state 3" in msg
    assert "demos.allow_eval_scenes=true" in msg and "make_demos suite=libero_object" in msg
    report = check_heldout(suite, {0: Hdf5Demos(path)}, list(range(10)), allow_eval_scenes=True)
    assert report["overlapping_demos"] == 3 and report["demos_checked"] == 4 and report["allowed"]
    assert sorted(o["eval_init_index"] for o in report["overlaps"]) == [3, 4, 7]
    # Evaluating init states 0-2 only: nothing overlaps.
    assert check_heldout(suite, {0: Hdf5Demos(path)}, [0, 1, 2])["overlapping_demos"] == 0


@pytest.mark.slow
def test_libero_heldout_scene_is_not_an_eval_init_state(libero_env_var):
    from avbr.envs.registry import build_env

    env = build_env(SuiteConfig(name="libero_object", render=False), 0)
    try:
        env.reset_heldout(HELDOUT_SEED_BASE)
        first = env.env.sim.get_state().flatten()
        assert matching_states(first, env.init_states) == []
        env.reset_heldout(HELDOUT_SEED_BASE)  # the seed reproduces its scene
        assert matching_states(first, env.env.sim.get_state().flatten()[None]) == [0]
        env.reset(2)  # evaluation init states are replayed exactly, and match
        assert matching_states(env.env.sim.get_state().flatten(), env.init_states) == [2]
        with pytest.raises(ValueError, match="inside the evaluation range"):
            env.reset_heldout(7)
    finally:
        env.close()


@pytest.mark.slow
def test_lift_demos_are_held_out_and_a_copied_eval_scene_is_caught(tmp_path):
    pytest.importorskip("robosuite")
    out = tmp_path / "demos"
    subprocess.run([sys.executable, "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=2", "workers=1",
                    "suite.camera_size=32", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}"], check=True,
                   cwd=tmp_path, capture_output=True)
    path = out / "robosuite_lift" / "Lift_demo.hdf5"
    starts = Hdf5Demos(path).starts()
    assert sorted(s.seed for s in starts) == [HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + 1]
    assert {s.source for s in starts} == {"heldout_seed"}
    suite = SuiteConfig(name="robosuite_lift", camera_size=32)
    assert check_heldout(suite, {0: Hdf5Demos(path)}, [0, 1, 2])["overlapping_demos"] == 0
    # Robosuite evaluation refuses seeds in the held-out range, so the ranges cannot meet.
    from avbr.envs.registry import eval_init_states

    with pytest.raises(ValueError, match="held-out demo seeds"):
        eval_init_states(suite, 0, [HELDOUT_SEED_BASE])
    # A demo whose first scene is evaluation scene 1 (as before held-out scenes) is caught by its state.
    with h5py.File(path, "r+") as f:
        f["data/demo_0"].attrs["init_scene_state"] = eval_init_states(suite, 0, [1])[0]
    with pytest.raises(EvalScenesInDemosError, match="= init state 1"):
        check_heldout(suite, {0: Hdf5Demos(path)}, [0, 1, 2])
