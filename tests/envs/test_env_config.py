"""Fast tests: config validation, registry, init-state plan, observation conversion, assets,
renderer, and the bench script's sys.path guard."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avbr.envs import SuiteConfig, episode_specs, get_suite, list_suites, max_steps
from avbr.envs import libero_assets
from avbr.envs.observations import convert_obs, policy_frames, proprio_state, stack_obs
from avbr.envs.renderer import RendererError, configure_renderer

REPO = Path(__file__).resolve().parents[2]


def test_registry_lists_suites_and_rejects_unknown() -> None:
    names = list_suites()
    for name in ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90",
                 "robosuite_lift", "robosuite_pickplacecan", "robosuite_stack"):
        assert name in names
    with pytest.raises(KeyError, match="known suites: .*robosuite_lift"):
        get_suite("libero_nonexistent")


def test_protocol_defaults() -> None:
    expected = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                "libero_90": 400}
    for name, steps in expected.items():
        assert max_steps(SuiteConfig(name=name)) == steps
    cfg = SuiteConfig(name="libero_spatial", max_steps=280)
    assert max_steps(cfg) == 280
    default = SuiteConfig()
    assert default.num_settle_steps == 10 and default.settle_action == [0, 0, 0, 0, 0, 0, -1]
    assert default.flip_images and default.init_state_offset == 0
    with pytest.raises(ValueError, match="settle_action"):
        SuiteConfig(settle_action=[0.0] * 6)
    with pytest.raises(ValueError, match="max_steps"):
        SuiteConfig(max_steps=0)


def test_import_is_lazy() -> None:
    code = ("import sys, avbr.envs; avbr.envs.list_suites(); "
            "print(any(m in sys.modules for m in ('mujoco', 'robosuite', 'libero.libero')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_episode_plan_is_fixed_before_running() -> None:
    specs = episode_specs([3, 5], 4, init_state_offset=2, num_init_states=50)
    assert [(s.task_id, s.init_index, s.episode) for s in specs[:4]] == [
        (3, 2, 0), (3, 3, 1), (3, 4, 2), (3, 5, 3)]
    # Whatever order episodes finish in, each record keeps its spec's init index.
    finished = list(specs)
    random.Random(0).shuffle(finished)
    assert sorted(finished, key=lambda s: (s.task_id, s.episode)) == specs
    assert all(s.init_index == 2 + s.episode for s in finished)
    with pytest.raises(ValueError, match="init states"):
        episode_specs([0], 49, init_state_offset=2, num_init_states=50)


def _raw(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "agentview_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "robot0_eye_in_hand_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "robot0_eef_pos": np.array([0.1, 0.2, 0.3]),
        "robot0_eef_quat": np.array([0.0, 0.0, np.sin(0.25), np.cos(0.25)]),  # 0.5 rad about z
        "robot0_gripper_qpos": np.array([0.04, -0.04]),
    }


def test_convert_obs_flips_and_builds_state() -> None:
    raw = _raw(16)
    obs = convert_obs(raw, SuiteConfig(camera_size=16))
    assert obs["agentview"].dtype == np.uint8 and obs["agentview"].shape == (16, 16, 3)
    np.testing.assert_array_equal(obs["agentview"], raw["agentview_image"][::-1, ::-1])
    np.testing.assert_array_equal(obs["wrist"][0, 0], raw["robot0_eye_in_hand_image"][-1, -1])
    np.testing.assert_allclose(obs["state"], [0.1, 0.2, 0.3, 0, 0, 0.5, 0.04, -0.04], atol=1e-6)
    assert obs["state"].dtype == np.float32
    unflipped = convert_obs(raw, SuiteConfig(camera_size=16, flip_images=False))
    np.testing.assert_array_equal(unflipped["agentview"], raw["agentview_image"])
    blind = convert_obs(raw, SuiteConfig(camera_size=16, render=False))
    assert not blind["agentview"].any()
    with pytest.raises(AssertionError, match="agentview_image"):
        convert_obs(raw, SuiteConfig(camera_size=32))
    batch = stack_obs([obs, obs, obs])
    assert batch["agentview"].shape == (3, 16, 16, 3) and batch["state"].shape == (3, 8)
    image = raw["agentview_image"]
    np.testing.assert_array_equal(policy_frames(policy_frames(image, True), True), image)
    # The 180-degree rotation is robosuite's upright view [::-1] mirrored left-right.
    np.testing.assert_array_equal(policy_frames(image, True), image[::-1][:, ::-1])
    assert policy_frames(image, False) is not image
    assert proprio_state(raw).shape == (8,)


def test_asset_resolution_order_and_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libero_assets, "LIBERO_DOWNLOAD_CACHE", tmp_path / "no-cache")
    monkeypatch.delenv(libero_assets.ASSETS_ENV_VAR, raising=False)
    package_assets = libero_assets.libero_package_dir() / "assets"
    if not (package_assets / "scenes").is_dir():
        with pytest.raises(libero_assets.LiberoSetupError) as info:
            libero_assets.resolve_assets_dir()
        message = str(info.value)
        assert "download_assets_from_huggingface" in message and "AVBR_LIBERO_ASSETS" in message
        assert "suite.assets_dir" in message
    tree = tmp_path / "assets"
    for sub in libero_assets.REQUIRED_ASSET_DIRS:
        (tree / sub).mkdir(parents=True)
    monkeypatch.setenv(libero_assets.ASSETS_ENV_VAR, str(tree))
    assert libero_assets.resolve_assets_dir() == tree.resolve()
    explicit = tmp_path / "explicit"
    with pytest.raises(libero_assets.LiberoSetupError, match="not a LIBERO asset tree"):
        libero_assets.resolve_assets_dir(explicit)
    for sub in libero_assets.REQUIRED_ASSET_DIRS:
        (explicit / sub).mkdir(parents=True)
    assert libero_assets.resolve_assets_dir(explicit) == explicit.resolve()


def test_libero_config_written_without_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libero_assets, "PROJECT_LIBERO_CONFIG_DIR", tmp_path / "cfg")
    monkeypatch.delenv(libero_assets.LIBERO_CONFIG_ENV_VAR, raising=False)
    path = libero_assets.ensure_libero_config(tmp_path / "assets")
    import yaml

    config = yaml.safe_load(path.read_text())
    assert set(config) == {"benchmark_root", "bddl_files", "init_states", "datasets", "assets"}
    assert config["assets"] == str(tmp_path / "assets")
    assert Path(config["init_states"]).is_dir()
    import os

    assert os.environ[libero_assets.LIBERO_CONFIG_ENV_VAR] == str(tmp_path / "cfg")


def test_renderer_check(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RendererError, match="egl.*osmesa|osmesa.*egl"):
        configure_renderer("vulkan")
    from avbr.envs import renderer

    broken = renderer.RendererBackend("egl", ("libDoesNotExist.so.9",), "libegl1")
    monkeypatch.setitem(renderer.RENDERERS, "egl", broken)
    with pytest.raises(RendererError, match="apt-get install libegl1"):
        configure_renderer("egl")


def test_bench_script_runs_by_path() -> None:
    out = subprocess.run([sys.executable, str(REPO / "eval" / "bench.py"), "--help"],
                         capture_output=True, text=True, check=True, cwd=REPO / "eval")
    assert "envs" in out.stdout and "experts" in out.stdout
