"""A killed evaluation, started again, skips finished episodes and ends with the same results file.

Real simulator (robosuite Lift at 32 px, a one-block ViT, 10-step episodes): marked slow.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("robosuite")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "eval" / "libero.py"
TEST_CONFIGS = Path(__file__).resolve().parent / "configs"
ENV = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


@pytest.fixture(scope="module")
def lift_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    proc = subprocess.run([sys.executable, "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=3",
                           "workers=1", "suite.camera_size=32", f"out={out}", f"hydra.run.dir={out}/hydra"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _args(demos: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, str(SCRIPT), f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit",
            "suite=robosuite_lift", "suite.camera_size=32", "suite.max_steps=10", "episodes_per_task=3", "workers=1",
            f"demos.dir={demos}", f"demos.cache_dir={cache}", "policy.epochs=2", "policy.hidden_dim=32",
            "videos_per_task=1", "wandb.mode=disabled", f"out_dir={out}"]


def _comparable(path: Path) -> dict:
    results = json.loads(path.read_text())
    results["config"].pop("out_dir")
    results.pop("provenance")  # other commits may land in a shared tree between the two runs
    return results


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(lift_demos, tmp_path):
    cache = tmp_path / "cache"
    full = subprocess.run(_args(lift_demos, tmp_path / "full", cache), env=ENV, capture_output=True, text=True,
                          timeout=900)
    assert full.returncode == 0, full.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_args(lift_demos, killed_dir, cache), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = killed_dir / "episodes.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the app and its simulator workers
    proc.wait()
    done_before = log.read_text().count("\n")
    assert 1 <= done_before < 3, "the run must be killed between its first and last episode"
    assert not (killed_dir / "results.json").exists()
    head = killed_dir / "policy" / "seed0.safetensors"
    head_bytes = head.read_bytes()

    resumed = subprocess.run(_args(lift_demos, killed_dir, cache), env=ENV, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((e["task_id"], e["episode"]) for e in lines) == [(0, 0), (0, 1), (0, 2)]  # nothing re-run
    assert resumed.stdout.count("[eval] seed 0 task 0 episode") == 3 - done_before
    assert head.read_bytes() == head_bytes  # the trained head was reused, not retrained
    assert _comparable(killed_dir / "results.json") == _comparable(tmp_path / "full" / "results.json")
    assert (killed_dir / "videos" / json.loads((killed_dir / "results.json").read_text())["episodes"][0]["video"]).exists()


@pytest.mark.slow
def test_resume_into_a_different_run_is_refused(lift_demos, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_fingerprint.json").write_text(json.dumps({"gap": 5}))
    proc = subprocess.run(_args(lift_demos, out, tmp_path / "cache"), env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "different config" in proc.stderr
