"""Representation probes: synthetic flow ground truth, cell layout, relation labels, every task on a
LIBERO-layout fixture, the app by path, and (slow) simulator replay of object positions."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from avbr.eval.probing.action_data import load_pairs
from avbr.eval.probing.action_probe import EncoderSpec, SplitConfig, build_adapter
from avbr.eval.probing.flow import cell_targets, cells_to_pixels, epe, synthetic_sequences
from avbr.eval.probing.protocol import ProbeSettings
from avbr.eval.probing.rep_probes import PROBE_TASKS, FlowConfig, ProbeContext, fit_flow_probe
from avbr.eval.probing.rep_report import DemoDataConfig, ProbesConfig, probes_report
from avbr.eval.probing.spatial import ObjectTracks, relation_labels

REPO = Path(__file__).resolve().parents[2]
TINY = {"name": "dinov2_hf", "source": None, "img_size": 56, "frames": "both", "device": "cpu",
        "model_kwargs": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}}


def test_synthetic_flow_is_the_true_displacement():
    fs = synthetic_sequences(3, 64, frames=3, n_objects=2, max_speed=4, seed=1)
    assert fs.prev.shape == (6, 64, 64, 3) and fs.flow.shape == (6, 64, 64, 2)
    ys, xs = np.mgrid[0:64, 0:64]
    agree = total = 0
    for i in range(len(fs.prev)):
        x2, y2 = xs + fs.flow[i, ..., 0].astype(int), ys + fs.flow[i, ..., 1].astype(int)
        inside = (x2 >= 0) & (x2 < 64) & (y2 >= 0) & (y2 < 64)
        agree += (fs.curr[i][y2[inside], x2[inside]] == fs.prev[i][ys[inside], xs[inside]]).all(-1).sum()
        total += inside.sum()
    assert agree / total > 0.9  # the rest is occlusion by the moving rectangles
    assert np.abs(fs.flow).max() > 0  # something moves


def test_cell_layout_round_trips_and_matches_token_order():
    flow = np.zeros((1, 8, 8, 2), np.float32)
    flow[0, :4, 4:, 0] = 3.0  # top-right quadrant moves right: token 1 of a 2x2 grid
    t = cell_targets(flow, (2, 2), sub=2)
    assert t.shape == (1, 4, 8) and t[0, 1, 0::2].tolist() == [3.0] * 4 and t[0, [0, 2, 3]].max() == 0
    np.testing.assert_array_equal(cells_to_pixels(t, (2, 2), 2, 8), flow)
    assert epe(flow, np.zeros_like(flow)).max() == 3.0
    with pytest.raises(ValueError, match="divisible"):
        cell_targets(np.zeros((1, 10, 10, 2)), (3, 3), 1)


def test_flow_probe_recovers_flow_planted_in_the_tokens():
    """Tokens that carry each patch's true sub-cell flow (mixed by a random linear map, plus noise)
    give the oracle-cell EPE; tokens of noise give no better than the mean-flow baseline."""
    fs = synthetic_sequences(12, 64, frames=3, n_objects=2, max_speed=4, seed=2)
    target = cell_targets(fs.flow, (8, 8), sub=2)  # [M, 64, 8]
    rng = np.random.default_rng(0)
    planted = target @ rng.normal(size=(8, 24)) + 0.01 * rng.normal(size=(*target.shape[:2], 24))
    settings = ProbeSettings()
    good, _ = fit_flow_probe(planted.astype(np.float32), fs, 2, [0, 1], (0.6, 0.2, 0.2), settings)
    for r in good:
        assert r["epe"] < r["epe_oracle_cells"] + 0.05 < r["epe_mean_flow"]
    noise, _ = fit_flow_probe(rng.normal(size=planted.shape).astype(np.float32), fs, 2, [0], (0.6, 0.2, 0.2), settings)
    assert noise[0]["epe"] > 0.9 * noise[0]["epe_mean_flow"]


def test_relation_labels_follow_image_columns_and_drop_constant_pairs():
    px = np.array([[[10, 0], [20, 0], [5, 0]], [[30, 0], [20, 0], [6, 0]]], np.float32)  # [M=2, K=3, (col,row)]
    y, names = relation_labels(px, ["a", "b", "c"], min_share=0.5)
    assert names == ["a<b"] and y[:, 0].tolist() == [1.0, -1.0]  # a left of b, then right of it
    with pytest.raises(ValueError, match="no object pair"):
        relation_labels(px[:1], ["a", "b", "c"])


def _write_demos(root: Path, n_tasks: int = 2, n_demo: int = 3, length: int = 12) -> None:
    rng = np.random.default_rng(0)
    for task in range(n_tasks):
        with h5py.File(root / f"task{task}_demo.hdf5", "w") as f:
            data = f.create_group("data")
            data.attrs["problem_info"] = json.dumps({"language_instruction": f"task {task}"})
            for i in range(n_demo):
                g = data.create_group(f"demo_{i}")
                base = np.full((length, 56, 56, 3), 60 * task, np.uint8)
                g.create_dataset("obs/agentview_rgb", data=base + rng.integers(0, 40, base.shape, dtype=np.uint8))
                g.create_dataset("actions", data=rng.uniform(-1, 1, (length, 7)))
                g.create_dataset("states", data=rng.normal(size=(length, 9)))


def _fake_tracks(pairs, rng) -> dict[str, ObjectTracks]:
    out = {}
    for ep in set(pairs.episode):
        t = int(pairs.length[pairs.episode == ep][0])
        xyz = rng.uniform(-0.3, 0.3, size=(t, 3, 3)).astype(np.float32)
        out[ep] = ObjectTracks(["bowl", "plate", "mug"], xyz, (xyz[..., :2] * 100 + 64).astype(np.float32))
    return out


def test_every_task_runs_on_a_libero_layout_fixture(tmp_path):
    _write_demos(tmp_path, n_tasks=2, n_demo=3)
    pairs = load_pairs("hdf5_demos", str(tmp_path), gap=2, stride=2)
    ctx = ProbeContext(label="tiny", adapter=build_adapter(EncoderSpec(**TINY)), pairs=pairs,
                       tracks=_fake_tracks(pairs, np.random.default_rng(1)), probes=["ridge"], settings=ProbeSettings(),
                       seeds=[0, 1], fractions=(0.5, 0.25, 0.25), flow=FlowConfig(n_sequences=6, n_plot=2),
                       spatial_readouts=["cls", "agg_a", "pixelwise"], tsne_perplexity=5, batch_size=8, out_dir=tmp_path)
    res = {t: PROBE_TASKS.get(t)(ctx) for t in PROBE_TASKS.names()}
    acc = res["temporal_order"]["probes"]["ridge"]["accuracy"]["mean"]
    assert 0.0 <= acc <= 1.0 and res["temporal_order"]["n_pairs"] == len(pairs)
    f = res["flow"]
    assert f["grid"] == [4, 4] and f["summary"]["epe"]["mean"] > 0 and (tmp_path / f["plot"]).exists()
    assert f["summary"]["epe_oracle_cells"]["mean"] < f["summary"]["epe_zero_flow"]["mean"]
    c = res["clustering"]
    assert -1 <= c["silhouette_cosine"] <= 1 and c["n_tasks"] == 2 and (tmp_path / c["plot"]).exists()
    pos = res["spatial_position"]["readouts"]
    assert "error_cm" in pos["cls"]["ridge"] and pos["agg_a"]["feature_dim"] == 4 * 32
    assert "pixel-wise" in pos["pixelwise"]["skipped"] or "pixelwise" in pos["pixelwise"]["skipped"]
    rel = res["spatial_relation"]
    assert rel["pairs"] and "accuracy" in rel["readouts"]["cls"]["ridge"]
    cfg = ProbesConfig(encoders={"tiny": EncoderSpec(**TINY)}, flow_reference="tiny", data=DemoDataConfig(root=str(tmp_path)),
                       spatial_readouts=["cls", "agg_a", "pixelwise"])
    md = probes_report({"data": {"n_pairs": len(pairs), "gap": 2, "n_episodes": 6, "tasks": ["a", "b"]},
                        "encoders": {"tiny": {**res}}}, cfg)
    assert "| tiny | pixelwise | - |" in md and "Temporal order" in md and "+0.0 %" in md


def test_config_checks_task_names_and_demo_root():
    with pytest.raises(KeyError, match="valid names"):
        ProbesConfig(tasks=["depth"])
    with pytest.raises(ValueError, match="data.root"):
        ProbesConfig(tasks=["temporal_order"])
    ProbesConfig(tasks=["flow"])  # flow needs no demos
    with pytest.raises(ValueError, match="replay simulator states"):
        ProbesConfig(data=DemoDataConfig(root="x", source="lerobot"))


def test_demo_tasks_read_a_lerobot_dataset(tmp_path):
    """temporal order and clustering on the LeRobot-layout fixture (tests/data/lerobot_fixtures.py)."""
    sys.path.insert(0, str(REPO / "tests" / "data"))
    from lerobot_fixtures import LENGTHS, TASKS, write_v30

    root = write_v30(tmp_path / "ds")
    cfg = ProbesConfig(encoders={"tiny": EncoderSpec(**TINY)}, tasks=["temporal_order", "clustering"],
                       data=DemoDataConfig(root=str(root), source="lerobot", kwargs={"camera": "wrist"}, gap=2, stride=1,
                                           max_pairs_per_episode=None, image_size=56),
                       split=SplitConfig(seeds=[0], fractions=(0.34, 0.33, 0.33)))
    from avbr.eval.probing.rep_report import run_probes
    res = run_probes(cfg, tmp_path / "out")
    assert res["data"]["n_pairs"] == sum(n - 2 for n in LENGTHS) and res["data"]["n_episodes"] == 3
    assert res["data"]["tasks"] == sorted(TASKS)
    assert res["encoders"]["tiny"]["clustering"]["n_tasks"] == 2


def test_app_runs_by_path(tmp_path):
    (tmp_path / "demos").mkdir()
    _write_demos(tmp_path / "demos", n_tasks=2, n_demo=3)
    out = tmp_path / "out"
    tiny = ("+encoders.tiny={name: dinov2_hf, source: null, img_size: 56, frames: both, device: cpu, "
            "model_kwargs: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}}")
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval" / "probes.py"), "tasks=[temporal_order,flow]", f"data.root={tmp_path / 'demos'}",
         "data.gap=2", "data.stride=3", f"output_dir={out}", "~encoders.two_stream_random", "~encoders.dinov2_random", "~encoders.r3m_random",
         tiny, "flow_reference=tiny", "flow.n_sequences=6", "split.seeds=[0]"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["schema"] == "avbr.probes" and set(record["results"]["encoders"]) == {"tiny"}
    assert (out / "flow_errors_tiny.png").exists() and "Optical flow" in (out / "report.md").read_text()


@pytest.mark.slow
def test_simulator_replay_gives_object_positions_and_pixels(tmp_path):
    """Replays robosuite Lift states from a LIBERO-layout file; the cube's position matches the
    simulator and its projected pixel is red in the upright agentview frame (the red cube)."""
    from avbr.envs.config import SuiteConfig
    from avbr.envs.registry import build_env
    from avbr.eval.probing.spatial import demo_object_tracks

    env = build_env(SuiteConfig(name="robosuite_lift", render=True, camera_size=96), 0)
    try:
        obs = env.reset(3)
        frame = obs["agentview_image"][::-1, ::-1]  # raw robosuite render (OpenGL) -> upright, as the readers return it
        sim = env.env.sim
        states = [sim.get_state().flatten()]
        cube = [sim.data.body_xpos[env.env.cube_body_id].copy()]
        for _ in range(3):
            env.step(np.array([0.5, 0.0, 0.0, 0, 0, 0, -1.0]))
            states.append(sim.get_state().flatten())
            cube.append(sim.data.body_xpos[env.env.cube_body_id].copy())
    finally:
        env.close()
    path = tmp_path / "lift_demo.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["avbr_suite"], data.attrs["avbr_task_id"] = "robosuite_lift", 0
        g = data.create_group("demo_0")
        g.create_dataset("states", data=np.stack(states))
        g.create_dataset("obs/agentview_rgb", data=np.zeros((4, 96, 96, 3), np.uint8))
        g.create_dataset("actions", data=np.tile([0.5, 0.0, 0.0, 0, 0, 0, -1.0], (4, 1)))  # the reader pairs states with actions
    tracks = demo_object_tracks(path)["demo_0"]
    assert tracks.names == ["cube"]
    # env.step leaves body_xpos one physics substep behind the stored qpos (mj_step computes positions
    # before integrating); the replay runs mj_forward on the state itself, hence the 2 mm tolerance
    np.testing.assert_allclose(tracks.xyz[:, 0], np.stack(cube), atol=2e-3)
    np.testing.assert_allclose(tracks.xyz[0, 0], cube[0], atol=1e-5)  # after reset the two agree exactly
    col, row = np.round(tracks.pixel[0, 0]).astype(int)
    r, g, b = frame[row, col].astype(int)
    assert r > g + 40 and r > b + 40, f"pixel {(col, row)} is {(r, g, b)}, not the red cube"
