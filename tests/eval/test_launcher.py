"""Sharded evaluations through Hydra launchers: the Slurm launcher config composes with a shard
sweep, and a multirun prints each shard's part of the episode plan."""

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_module

import avbr.eval.libero  # noqa: F401 - stores the app's config schemas

ROOT = Path(__file__).resolve().parents[2]


def test_submitit_slurm_launcher_composes_with_a_shard_sweep():
    with initialize_config_module("avbr.configs", version_base="1.3"):
        cfg = compose("libero", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=1",
                                           "hydra.launcher.timeout_min=240", "shard.count=4",
                                           "out_dir=outputs/eval/lift/shard${shard.index}of${shard.count}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.shard.count == 4
    assert cfg.out_dir == "outputs/eval/lift/shard0of4"


def test_multirun_prints_each_shards_plan(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "eval" / "libero.py"), "-m", "dry_run=true", "encoder.source=random",
         "suite=robosuite_lift", "episodes_per_task=5", "seeds=[0,1]", "shard.count=3", "shard.index=range(3)",
         f"demos.dir={tmp_path / 'demos'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         f"out_dir={tmp_path}/shard${{shard.index}}of${{shard.count}}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    plans = [line for line in out.stdout.splitlines() if line.startswith("[dry run] shard ")]
    assert [p.split(":")[0] for p in plans] == [f"[dry run] shard {i}/3" for i in range(3)]
    assert [int(p.split(": ")[1].split()[0]) for p in plans] == [4, 3, 3]  # 10 episodes in all
