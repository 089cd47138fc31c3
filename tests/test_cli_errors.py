"""Bad inputs a new user hits: every entry point prints one message and exits with status 2.

Each case runs the real command in a fresh interpreter (``avbr.cli.entry_point`` wraps ``main``)
and checks the exit status, that no ``Traceback`` is printed, and the key words of the message.
``verbose=true`` brings the traceback back. The files are built here: official-layout demos
(``tests/libero_demo_fixture.py``), truncated and garbage hdf5, float frames, mixed image sizes,
a checkpoint folder of another run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.libero_demo_fixture import write_official_demo

REPO = Path(__file__).resolve().parents[1]
TINY_TIMM = ["encoder=timm_vit", "encoder.source=null", "encoder.img_size=32", "encoder.device=cpu", "cache_dir=null",
             "+encoder.model_kwargs={embed_dim: 32, depth: 1, num_heads: 2}"]


def _frames(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _truncated_demo(tmp: Path) -> Path:
    path = write_official_demo(tmp / "demos" / "task_demo.hdf5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.parent


def _garbage_demo(tmp: Path) -> Path:
    path = tmp / "demos" / "task_demo.hdf5"
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path.parent


def _float_frames(tmp: Path) -> Path:
    np.save(tmp / "v.npy", _frames(3, 32).astype(np.float32) / 255)
    return tmp / "v.npy"


def _mixed_sizes(tmp: Path) -> Path:
    (tmp / "imgs").mkdir()
    for i, size in enumerate((32, 48)):
        Image.fromarray(_frames(1, size)[0]).save(tmp / "imgs" / f"{i}.png")
    return tmp / "imgs"


def _wrong_weights(tmp: Path) -> Path:
    """A checkpoint of another architecture: a DINOv2-style key layout, not timm's."""
    save_file({"embeddings.cls_token": torch.zeros(1, 1, 32), "encoder.layer.0.norm1.weight": torch.ones(32)},
              str(tmp / "w.safetensors"))
    return tmp / "w.safetensors"


def _wrong_suite_demos(tmp: Path) -> Path:
    """A libero_object file where the robosuite_lift task's demos belong."""
    write_official_demo(tmp / "demos" / "robosuite_lift" / "Lift_demo.hdf5", suite="libero_object")
    return tmp / "demos"


def _lerobot_dataset(tmp: Path) -> Path:
    """A LeRobotDataset v3.0 in the layout of LeRobot's writers (``tests/data/lerobot_fixtures.py``)."""
    from tests.data.lerobot_fixtures import write_v30

    return write_v30(tmp / "lerobot")


def _other_run(tmp: Path) -> Path:
    """A run folder whose checkpoint was written by another run (another model and seed)."""
    ckpt = tmp / "run" / "checkpoints" / "step_0000002"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer.pt").write_bytes(b"")
    (ckpt / "config.yaml").write_text("model: {name: other}\ntrain: {seed: 99}\n")
    (tmp / "run" / "checkpoints" / "latest").write_text("step_0000002")
    return tmp / "run"


LIBERO = [sys.executable, str(REPO / "eval" / "libero.py"), "dry_run=true"]
FEATURES = [sys.executable, "-m", "avbr.adapters.features"]
TRAIN = [sys.executable, "-m", "avbr.train", "wandb.mode=disabled"]

# id -> (command, setup(tmp) -> value substituted for {x}, key words of the message)
CASES = {
    "unknown_encoder": (LIBERO + ["encoder=nope"], None, ["Could not find 'encoder/nope'", "two_stream"]),
    "unknown_encoder_name": (FEATURES + ["encoder.name=nope", "input=x.npy"], None,
                             ["unknown encoder 'nope'", "valid names", "dinov2_hf"]),
    "unknown_suite": (LIBERO + ["suite=nope"], None, ["Could not find 'suite/nope'", "libero_object"]),
    "unknown_policy": (LIBERO + ["policy=nope"], None, ["Could not find 'policy/nope'", "bc_mlp"]),
    "unknown_config_key": (LIBERO + ["episodes=3"], None, ["Could not override 'episodes'", "not in 'EvalConfig'"]),
    "bad_config_value": (TRAIN + ["train.total_steps=2"], None, ["optim.warmup_steps (20)", "train.total_steps (2)"]),
    "task_99": (LIBERO + ["tasks=[99]"], None, ["no task ids [99]", "valid: 0..0", "tasks=null"]),
    "task_99_make_demos": ([sys.executable, "-m", "avbr.envs.make_demos", "tasks=[99]", "out={tmp}/demos"], None,
                           ["no task ids [99]", "tasks=null"]),
    "missing_source_folder": (FEATURES + TINY_TIMM + ["source.name=image_folder", "source.root={tmp}/nowhere"], None,
                              ["nowhere does not exist", "root"]),
    "wrong_weights": ([*FEATURES, *TINY_TIMM[:1], "encoder.source={x}", *TINY_TIMM[2:], "input=x.npy"], _wrong_weights,
                      ["does not match", "missing", "2 unexpected", "first 5", "encoder.name"]),
    "truncated_hdf5": (FEATURES + TINY_TIMM + ["source.name=hdf5_demos", "source.root={x}"], _truncated_demo,
                       ["task_demo.hdf5"]),
    "garbage_hdf5": (FEATURES + TINY_TIMM + ["source.name=hdf5_demos", "source.root={x}"], _garbage_demo,
                     ["task_demo.hdf5"]),
    "demos_wrong_suite": (LIBERO + ["demos.dir={x}"], _wrong_suite_demos, ["Lift_demo.hdf5", "libero_object"]),
    "demos_lerobot_not_a_dataset": (LIBERO + ["demos.lerobot={tmp}"], None,
                                    ["no meta/info.json", "not a LeRobotDataset", "format=lerobot"]),
    "demos_lerobot_wrong_key_map": (LIBERO + ["demos.lerobot={x}", "demos.lerobot_keys=openpi_libero"], _lerobot_dataset,
                                    ["no camera feature 'image'", "observation.images.image", "another key map"]),
    "float_frames": (FEATURES + TINY_TIMM + ["input={x}"], _float_frames, ["must be uint8", "float32", "astype"]),
    "mixed_image_sizes": (FEATURES + TINY_TIMM + ["source.name=image_folder", "source.root={x}"], _mixed_sizes,
                          ["2 sizes", "(32, 32)", "(48, 48)", "resize"]),
    "pretrain_missing_data_root": (TRAIN + ["data=libero", "data.sources.libero.root={tmp}/nowhere"], None,
                                   ["data.sources.libero", "nowhere does not exist"]),
    "pretrain_resume_other_run": (TRAIN + ["train.output_dir={x}"], _other_run,
                                  ["different run", "model", "train.seed", "new train.output_dir"]),
    "bench_unknown_suite": ([sys.executable, str(REPO / "eval" / "bench.py"), "envs", "--suite", "nope"], None,
                            ["unknown suite 'nope'", "robosuite_lift"]),
    "vla_finetune_no_demos": ([sys.executable, "-m", "avbr.adapters.vla.finetune", "vla=openvla_tiny", "device=cpu",
                               "out_dir={tmp}/vla"], None, ["no demos", "data.paths=", "data.synthetic=true"]),
    "probes_missing_data_root": ([sys.executable, str(REPO / "eval" / "probes.py"), "data.root={tmp}/nowhere",
                                  "output_dir={tmp}/out"], None, ["nowhere does not exist", "root"]),
    "report_no_runs": ([sys.executable, str(REPO / "eval" / "report.py"), "runs=[{tmp}/nowhere]", "out={tmp}/r"], None,
                       ["nowhere"]),
}


def _run(cmd: list[str], tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([*cmd, f"hydra.run.dir={tmp}/hydra"] if "bench.py" not in cmd[1] else cmd,
                          capture_output=True, text=True, timeout=300, cwd=tmp, env=env)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_message_and_status_2(case: str, tmp_path: Path) -> None:
    cmd, setup, words = CASES[case]
    x = setup(tmp_path) if setup else ""
    res = _run([c.replace("{tmp}", str(tmp_path)).replace("{x}", str(x)) for c in cmd], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    message = res.stderr[res.stderr.find("error ("):]
    for word in words:
        assert word in message, (word, out[-3000:])


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    cmd, _, _ = CASES["task_99"]
    for switch in ("verbose=true", "--verbose"):
        res = _run([*cmd, switch], tmp_path)
        assert res.returncode != 0 and "Traceback" in res.stderr and "ConfigError" in res.stderr
    res = _run(cmd, tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert "Traceback" in res.stderr


@pytest.mark.slow  # builds the LIBERO task list: imports the libero package
@pytest.mark.parametrize("where", ["missing", "bad_dir"])
def test_libero_assets_errors(where: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cmd = [*LIBERO, "suite=libero_object"] + ([f"suite.assets_dir={tmp_path}/nowhere"] if where == "bad_dir" else [])
    env = {k: v for k, v in os.environ.items() if k != "AVBR_LIBERO_ASSETS"}
    res = subprocess.run([*cmd, f"hydra.run.dir={tmp_path}/hydra"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**env, "HOME": str(home), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"})
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert "LiberoSetupError" in res.stderr and "assets_dir" in res.stderr, out[-3000:]
    if where == "bad_dir":
        assert "nowhere" in res.stderr
