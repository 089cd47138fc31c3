"""Slow test: ``make_demos format=lerobot`` writes a LeRobotDataset v3.0 that the ``lerobot`` source reads
upright, and that ``eval/libero.py demos.lerobot=...`` trains on (the README's worked example)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from env_policies import ZeroPolicy

from avbr.data import build_source
from avbr.envs import EpisodeSpec, SuiteConfig, run_episodes
from avbr.envs.scenes import HELDOUT_SEED, HELDOUT_SEED_BASE

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_make_demos_lerobot_robosuite_lift(tmp_path: Path) -> None:
    out = tmp_path / "demos"
    subprocess.run(
        [sys.executable, "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=2", "workers=2",
         f"out={out}", "suite.camera_size=64", "format=lerobot", f"hydra.run.dir={tmp_path / 'hydra'}"],
        check=True, cwd=tmp_path)
    root = out / "robosuite_lift" / "lerobot"
    summary = json.loads((out / "robosuite_lift" / "summary.json").read_text())
    assert summary["tasks"][0]["written"] == 2 and summary["tasks"][0]["file"] == str(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2 and info["fps"] == 20
    assert info["features"]["observation.state"]["shape"] == [8] and info["features"]["action"]["shape"] == [7]

    src = build_source("lerobot", str(root))
    refs = src.episodes()
    assert len(refs) == 2 and sum(src.episode_length(r) for r in refs) == info["total_frames"]
    s = src.read_pair(refs[0], 0, 1)
    assert s["action"].shape == (7,) and s["state"].shape == (8,) and s["task"]
    # Upright like the env's observations: frame 0 of some demo matches the env's first frame of
    # the same held-out scene (the lossy video makes it approximate) far better than its
    # 180-degree rotation.
    first = run_episodes(SuiteConfig(name="robosuite_lift", camera_size=64, max_steps=1), ZeroPolicy(),
                         episodes=[EpisodeSpec(task_id=0, init_index=HELDOUT_SEED_BASE, episode=0, source=HELDOUT_SEED)],
                         record_frames=True)[0].frames[0].astype(float)
    frames = [src.read_pair(r, 0, 1)["prev"].astype(float) for r in refs]
    upright = min(np.abs(f - first).mean() for f in frames)
    flipped = min(np.abs(f[::-1, ::-1] - first).mean() for f in frames)
    assert upright < 6 and flipped > 2 * upright, (upright, flipped)

    # The worked example: eval/libero.py on that dataset (demos.lerobot), every step of the run real.
    configs = REPO / "tests" / "eval" / "configs"
    run = subprocess.run(
        [sys.executable, str(REPO / "eval" / "libero.py"), f"hydra.searchpath=[file://{configs}]", "encoder=tiny_vit",
         "suite=robosuite_lift", "suite.camera_size=64", "suite.max_steps=5", "episodes_per_task=2", "workers=1",
         f"demos.lerobot={root}", "demos.cache_dir=null", "policy.epochs=2", "policy.hidden_dim=16",
         "videos_per_task=0", f"out_dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200, env={**os.environ, "WANDB_MODE": "disabled"})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["heldout"]["demos_checked"] == 2 and results["heldout"]["overlapping_demos"] == 0
    assert results["heldout"]["sources"] == {HELDOUT_SEED: 2} and results["heldout"]["unverified_demos"] == 0
    assert results["demo_files"]["0"]["file"] == f"lerobot:{src.tasks[0]}"
    assert results["suite_success"]["episodes"] + results["suite_success"]["crashed"] == 2
