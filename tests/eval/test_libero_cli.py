"""eval/libero.py as users run it: by path, in a subprocess (the sys.path trap), and its config errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "eval" / "libero.py"
TEST_CONFIGS = Path(__file__).resolve().parent / "configs"


def run_script(*args, cwd=REPO, timeout=120):
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_runs_by_path():
    out = run_script("--help", f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit")
    assert out.returncode == 0, out.stderr
    assert "episodes_per_task" in out.stdout and "policy" in out.stdout


def test_script_does_not_shadow_the_libero_package(tmp_path, libero_env_var):
    # A dry run lists the LIBERO tasks, which imports the `libero` package. Without the sys.path
    # guard, `import libero` would find eval/libero.py itself and fail.
    out = run_script(f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit", "suite=libero_object",
                     "dry_run=true", f"out_dir={tmp_path}/run", f"demos.dir={tmp_path}/nodemos", "tasks=[0]",
                     timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[dry run] libero_object task 0" in out.stdout
    # Missing demos: the message says how to generate them.
    assert "python -m avbr.envs.make_demos suite=libero_object" in out.stdout


@pytest.mark.parametrize("override, group, valid", [
    ("encoder=tiny_vitt", "encoder", "tiny_vit"),
    ("suite=libero_objectt", "suite", "libero_object"),
    ("policy=bc_mpl", "policy", "bc_mlp"),
])
def test_misspelt_group_option_lists_valid_names(tmp_path, override, group, valid):
    out = run_script(f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit", override,
                     f"out_dir={tmp_path}/run")
    assert out.returncode != 0
    assert f"Available options in '{group}'" in out.stderr and valid in out.stderr, out.stderr[-2000:]


def test_misspelt_registry_name_lists_valid_names(tmp_path):
    out = run_script(f"hydra.searchpath=[file://{TEST_CONFIGS}]", "encoder=tiny_vit", "suite.name=robosuite_lfit",
                     "dry_run=true", f"out_dir={tmp_path}/run")
    assert out.returncode != 0
    assert "unknown suite 'robosuite_lfit'" in out.stderr and "robosuite_lift" in out.stderr
