"""Action probing: fixtures in the exact Bridge V2 raw layout and the LIBERO hdf5 layout, the
planted-relation recovery through the CLI, and the end-to-end app on both layouts."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from avbr.eval.probing.action_data import load_pairs
from avbr.eval.probing.action_probe import ActionProbeConfig, DataConfig, EncoderSpec, SplitConfig, run_action_probe
from avbr.eval.features import load_feature_file, save_feature_file
from avbr.eval.probing.protocol import ProbeSettings

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "eval" / "bridge_probe.py"
TINY_DINO = {"name": "dinov2_hf", "source": None, "img_size": 28, "frames": "both", "device": "cpu",
             "model_kwargs": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}}


def _frame(rng: np.random.Generator, h: int = 48, w: int = 64) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_bridge_raw(root: Path, n_traj: int = 4, length: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Bridge V2 raw layout (rail-berkeley/bridge_data_v2 data_processing/bridgedata_raw_to_numpy.py):
    ``<date>/raw/traj_group0/traj<i>/{images0/im_<t>.jpg, policy_out.pkl, obs_dict.pkl, agent_data.pkl, lang.txt}``.
    Returns the actions written per trajectory id."""
    rng = np.random.default_rng(seed)
    written = {}
    for i in range(n_traj):
        traj = root / "2022-05-01_10-00-00" / "raw" / "traj_group0" / f"traj{i}"
        (traj / "images0").mkdir(parents=True)
        for t in range(length):
            Image.fromarray(_frame(rng)).save(traj / "images0" / f"im_{t}.jpg", quality=90)
        actions = rng.uniform(-1, 1, size=(length - 1, 7)).astype(np.float32)
        actions[:, 6] = rng.integers(0, 2, size=length - 1)  # Bridge gripper: 0 closed, 1 open
        policy_out = [{"actions": a, "new_robot_transform": np.eye(4), "delta_robot_transform": np.eye(4),
                       "policy_type": "VRTeleopPolicy"} for a in actions]
        state = rng.normal(size=(length, 7))
        obs = {"full_state": state, "state": state, "qpos": rng.normal(size=(length, 6)),
               "qvel": rng.normal(size=(length, 6)), "eef_transform": np.tile(np.eye(4), (length, 1, 1)),
               "time_stamp": list(np.arange(length) * 0.2), "desired_state": state, "env_done": [False] * length}
        for name, obj in (("policy_out.pkl", policy_out), ("obs_dict.pkl", obs), ("agent_data.pkl", {"agent": "widowx"})):
            with open(traj / name, "wb") as f:
                pickle.dump(obj, f)
        (traj / "lang.txt").write_text(f"put the spoon in pot {i % 2}\nconfidence: 1\n")
        written[os.path.relpath(traj, root)] = actions
    return written


def write_libero_hdf5(path: Path, n_demo: int = 4, length: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """The official LIBERO demo layout: ``data/demo_i/{obs/agentview_rgb, actions, states, ...}``."""
    rng = np.random.default_rng(seed)
    written = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "pick up the black bowl"})
        data.attrs["env_args"] = json.dumps({"env_name": "Libero_Tabletop_Manipulation"})
        data.attrs["bddl_file_name"] = "pick_up_the_black_bowl.bddl"
        for i in range(n_demo):
            g = data.create_group(f"demo_{i}")
            g.create_dataset("obs/agentview_rgb", data=rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8))
            g.create_dataset("obs/eye_in_hand_rgb", data=rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8))
            acts = rng.uniform(-1, 1, (length, 7)).astype(np.float64)
            acts[:, 6] = np.where(rng.random(length) > 0.5, 1.0, -1.0)
            g.create_dataset("actions", data=acts)
            g.create_dataset("states", data=rng.normal(size=(length, 20)))
            for k in ("rewards", "dones"):
                g.create_dataset(k, data=np.zeros(length))
            written[f"{path.name}:demo_{i}"] = acts.astype(np.float32)
    return written


def test_bridge_raw_layout_reads_actions_ids_and_instructions(tmp_path):
    written = write_bridge_raw(tmp_path, n_traj=3, length=6)
    pairs = load_pairs("bridge", str(tmp_path), gap=2, image_size=32)
    assert len(pairs) == 3 * 4 and pairs.prev.shape == (12, 32, 32, 3) and pairs.prev.dtype == np.uint8
    for ep, t, a in zip(pairs.episode, pairs.t, pairs.action):
        np.testing.assert_array_equal(a, written[ep][t])  # a_t belongs to o_t, not o_{t+k}
    assert set(pairs.task) == {"put the spoon in pot 0", "put the spoon in pot 1"}
    assert set(pairs.episode) == set(written)


def test_libero_layout_reads_actions_and_demo_ids(tmp_path):
    written = write_libero_hdf5(tmp_path / "pick_up_the_black_bowl_demo.hdf5", n_demo=3, length=5)
    pairs = load_pairs("hdf5_demos", str(tmp_path), gap=1, stride=2)
    assert len(pairs) == 3 * 2 and pairs.curr.shape[1:] == (32, 32, 3)
    for ep, t, a in zip(pairs.episode, pairs.t, pairs.action):
        np.testing.assert_array_equal(a, written[ep][t])
    assert set(pairs.task) == {"pick up the black bowl"}


def _planted(tmp_path: Path, noise: float, shuffle: bool = False) -> Path:
    rng = np.random.default_rng(0)
    n_traj, per, a_dim = 24, 15, 7
    action = rng.normal(size=(n_traj * per, a_dim)).astype(np.float32)
    action[:, 6] = np.sign(action[:, 6])
    mix = rng.normal(size=(a_dim, 48))
    source = rng.permutation(action) if shuffle else action
    feats = source @ mix + noise * rng.normal(size=(len(action), 48))
    episode = np.repeat([f"traj_group0/traj{i}" for i in range(n_traj)], per)
    return save_feature_file(tmp_path / "planted.npz", pair=feats.astype(np.float32), action=action, episode=episode)


def _run_cli(*overrides: str) -> dict:
    proc = subprocess.run([sys.executable, str(APP), *overrides], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cli_recovers_a_planted_linear_relation(tmp_path):
    path = _planted(tmp_path, noise=0.01)
    out = tmp_path / "out"
    _run_cli(f"features={path}", f"output_dir={out}", "inputs=[pair]", "probes=[ridge,mlp]", "split.seeds=[0,1]",
             "probe.mlp_epochs=60", "probe.mlp_weight_decays=[0.0001]")
    record = json.loads((out / "results.json").read_text())
    assert record["schema"] == "avbr.bridge_probe" and record["schema_version"] == 2
    assert record["config"]["features"] == str(path) and "commit" in record["provenance"]["git"]
    assert record["provenance"]["package"]["version"] and record["provenance"]["created_utc"]
    probes = record["results"]["inputs"]["pair"]["probes"]
    ridge = probes["ridge"]["summary"]
    assert ridge["r2_mean"]["mean"] > 0.99 and min(d["mean"] for d in ridge["r2_per_dim"]) > 0.99
    assert ridge["gripper_accuracy"]["mean"] > 0.99
    assert probes["mlp"]["summary"]["r2_mean"]["mean"] > 0.9
    assert (out / "config.yaml").exists() and "| pair | ridge |" in (out / "report.md").read_text()


def test_probe_finds_nothing_when_features_do_not_depend_on_actions(tmp_path):
    data = load_feature_file(_planted(tmp_path, noise=0.01, shuffle=True))
    cfg = ActionProbeConfig(features="unused.npz", inputs=["pair"], probes=["ridge"], split=SplitConfig(seeds=[0]))
    r2 = run_action_probe(cfg, data)["inputs"]["pair"]["probes"]["ridge"]["summary"]["r2_mean"]["mean"]
    assert r2 < 0.1


def test_config_requires_data_or_features():
    with pytest.raises(ValueError, match="data.root"):
        ActionProbeConfig()
    with pytest.raises(ValueError, match="inputs"):
        ActionProbeConfig(features="x.npz", inputs=["future"])


def test_libero_layout_end_to_end_with_a_tiny_encoder(tmp_path):
    write_libero_hdf5(tmp_path / "a_demo.hdf5", n_demo=5, length=6)
    cfg = ActionProbeConfig(
        data=DataConfig(source="hdf5_demos", root=str(tmp_path), image_size=None), encoder=EncoderSpec(**TINY_DINO),
        probes=["ridge"], split=SplitConfig(seeds=[0, 1]), probe=ProbeSettings(),
        save_features=str(tmp_path / "f.npz"),
    )
    res = run_action_probe(cfg)
    assert res["n_samples"] == 25 and res["n_trajectories"] == 5 and res["action_dim"] == 7
    for inp in ("pair", "single"):
        assert res["inputs"][inp]["feature_dim"] == 64  # frames=both doubles D=32
        s = res["inputs"][inp]["probes"]["ridge"]["summary"]
        assert len(s["r2_per_dim"]) == 7 and s["mse"]["mean"] > 0
    saved = load_feature_file(tmp_path / "f.npz")
    assert saved["pair"].shape == (25, 64) and saved["episode"][0].endswith(":demo_0")


@pytest.mark.slow
def test_cli_end_to_end_on_the_bridge_raw_layout(tmp_path):
    write_bridge_raw(tmp_path / "bridge", n_traj=5, length=5)
    out = tmp_path / "out"
    enc = [f"encoder.{k}={v}" for k, v in TINY_DINO.items() if k not in ("model_kwargs", "source")]
    _run_cli(f"data.root={tmp_path / 'bridge'}", "data.image_size=32", f"output_dir={out}", "probes=[ridge,mlp]",
             "probe.mlp_epochs=5", "split.seeds=[0,1]", *enc,
             "encoder.source=null", "++encoder.model_kwargs={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}")
    record = json.loads((out / "results.json").read_text())
    res = record["results"]
    assert res["n_samples"] == 20 and res["n_trajectories"] == 5
    assert set(res["inputs"]) == {"pair", "single"}
    per_seed = res["inputs"]["pair"]["probes"]["ridge"]["per_seed"]
    assert [p["seed"] for p in per_seed] == [0, 1] and all(sum(p["sizes"].values()) == 20 for p in per_seed)
    assert record["config"]["encoder"]["name"] == "dinov2_hf"
