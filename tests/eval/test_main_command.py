"""The main command on a fresh machine: encoder and demos found or made, failed starts leave nothing behind.

    python eval/libero.py encoder=two_stream suite=...

Fast tests stop before any simulation; the end-to-end one (real robosuite Lift) is slow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "eval" / "libero.py"
TEST_CONFIGS = Path(__file__).resolve().parent / "configs"
ENV = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def run(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_no_checkpoint_stops_with_the_pretraining_command(tmp_path):
    out = run("encoder=two_stream", "suite=robosuite_lift", f"out_dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode != 0
    assert "python -m avbr.train model.encoder=two_stream" in out.stderr and "encoder.source=random" in out.stderr
    assert not (tmp_path / "run" / "run_fingerprint.json").exists()


def test_failed_start_does_not_block_the_corrected_command(tmp_path):
    common = [f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit", "suite=robosuite_lift",
              "demos.generate=never", f"out_dir={tmp_path}/run"]
    first = run(*common, f"demos.dir={tmp_path}/wrong", cwd=tmp_path)
    assert first.returncode != 0 and "or point `demos.dir=` at the folder" in first.stderr
    assert not (tmp_path / "run" / "run_fingerprint.json").exists()
    # Following the advice (another demos.dir) is not refused as a different run: it fails only
    # because that folder is empty too, with the same instructions.
    second = run(*common, f"demos.dir={tmp_path}/other", cwd=tmp_path)
    assert "ResumeMismatchError" not in second.stderr and "different config" not in second.stderr
    assert "no demo file for 1 task(s) of robosuite_lift" in second.stderr


@pytest.mark.slow
def test_fresh_machine_finds_the_export_and_generates_held_out_demos(tmp_path):
    from avbr.models import build_model, save_encoder

    export = save_encoder(build_model("two_stream", preset="tiny", img_size=32, depth=3),
                          tmp_path / "outputs" / "pretrain" / "future_prediction_two_stream_x" / "encoder")
    out = run("encoder=two_stream", "suite=robosuite_lift", "suite.camera_size=32", "suite.max_steps=5",
              "episodes_per_task=2", "workers=1", "demos.generate_per_task=2", f"demos.cache_dir={tmp_path}/cache",
              "policy.epochs=2", "policy.hidden_dim=16", "videos_per_task=0", f"out_dir={tmp_path}/run",
              cwd=tmp_path, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"using the newest two_stream encoder exported by pretraining, {export}" in out.stdout
    assert "generating 2 scripted demos per task from held-out scenes" in out.stdout
    assert "[make_demos robosuite_lift] 2 episodes" in out.stdout  # the demo stage's end summary
    assert (tmp_path / "data" / "demos" / "robosuite_lift" / "Lift_demo.hdf5").exists()  # default demo folder
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["encoder_source"] == {"random_init": False, "source": str(export), "selected": "newest_export"}
    assert results["heldout"]["overlapping_demos"] == 0 and results["heldout"]["sources"] == {"heldout_seed": 2}
    assert results["suite_success"]["episodes"] + results["suite_success"]["crashed"] == 2
    assert results["demo_files"]["0"]["file"] == "Lift_demo.hdf5"
    assert f"Encoder weights: `{export}` (newest pretraining export" in (tmp_path / "run" / "summary.md").read_text()
