"""Sharded evaluation: shards partition the plan, and merging the shard folders of a real
robosuite Lift evaluation gives the results.json of the unsharded run of the same plan."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from avbr.eval.rollouts.shards import ShardConfig, ShardMismatchError, merge_shards, shard_keys

ROOT = Path(__file__).resolve().parents[2]


def test_shards_partition_the_plan_and_mix_tasks():
    plan = [(s, t, j) for s in (0, 1) for t in (0, 3, 5) for j in range(7)]
    parts = [shard_keys(plan, i, 4) for i in range(4)]
    assert set().union(*parts) == set(plan) and sum(map(len, parts)) == len(plan)
    assert {len(p) for p in parts} == {10, 11}
    assert all(len({t for _, t, _ in p}) == 3 for p in parts)  # every shard holds every task
    assert shard_keys(reversed(plan), 1, 4) == parts[1]  # order of the input does not matter
    with pytest.raises(ValueError, match="index < count"):
        ShardConfig(index=4, count=4)


@pytest.mark.slow
def test_merged_shards_equal_the_unsharded_run(tmp_path):
    common = [sys.executable, str(ROOT / "eval" / "libero.py"), "--config-dir", str(ROOT / "tests" / "eval" / "configs"),
              "encoder=tiny_vit", "suite=robosuite_lift", "suite.camera_size=32", "suite.max_steps=15",
              "episodes_per_task=5", "seeds=[0]", "workers=1", "videos_per_task=0", "wandb.mode=disabled",
              "policy.epochs=3", f"demos.dir={tmp_path / 'demos'}", "demos.generate_per_task=3",
              f"demos.cache_dir={tmp_path / 'cache'}", "torch_threads=1"]

    def run(*extra):
        subprocess.run(common + list(extra), check=True, capture_output=True, text=True, cwd=tmp_path, timeout=900)

    run(f"out_dir={tmp_path / 'whole'}")
    for i in range(2):
        run(f"out_dir={tmp_path / f'shard{i}'}", f"shard.index={i}", "shard.count=2")
    subprocess.run([sys.executable, str(ROOT / "eval" / "merge.py"), str(tmp_path / "shard*"),
                    "--out", str(tmp_path / "merged")], check=True, capture_output=True, text=True, timeout=300)
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert merged["config"].pop("out_dir") == str(tmp_path / "merged")
    whole["config"].pop("out_dir")
    assert merged == whole
    assert len(merged["episodes"]) == 5
    with pytest.raises(ShardMismatchError, match="shard 0..n-1"):
        merge_shards([tmp_path / "shard0"], tmp_path / "half")
