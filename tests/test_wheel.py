"""The harness as researchers install it on cluster nodes: a built wheel, run outside any git checkout.

Builds the wheel from a copy of the package sources (``pip wheel --no-build-isolation``: nothing
downloads), installs it with ``--no-deps`` into a fresh venv over this environment's packages
(torch, robosuite, ... come from here), and from a temporary directory runs the entry points of
a smoke workflow: the model summary, a 5-step pretraining run, scripted-expert demos, a
2-episode robosuite Lift evaluation with one video and its report, and a 5-step VLA fine-tune.
The jobs run twice (the VLA fine-tune once): with the environment's imageio ffmpeg plugin, and
with it hidden, like the GPU host of issue 20 whose imageio wrote ``.mp4``
with its TIFF writer. Real simulator and subprocesses: marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Source folder -> package name, from pyproject's ``package-dir`` (``configs`` -> ``avbr.configs``).
PACKAGE_DIRS = {src: pkg for pkg, src in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
#: ``as_installed``: imageio's ffmpeg plugin as this environment has it (robomimic, from the libero
#: extra, pulls it in); ``no_ffmpeg_plugin``: ``import imageio_ffmpeg`` fails.
MODES = ("as_installed", "no_ffmpeg_plugin")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The built wheel. Built from a copy of the sources, so no ``build/`` of the checkout leaks in."""
    for requirement in ("setuptools", "wheel"):  # [build-system] requires, used in place (no download)
        if importlib.util.find_spec(requirement) is None:
            pytest.fail(f"building the wheel offline needs {requirement} in this environment: pip install -e '.[dev]'")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in PACKAGE_DIRS:
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist)], cwd=src, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, timeout=300)
    (whl,) = dist.glob("avbr-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel, over this environment's packages; returns its python."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], cwd=root, env=dict(os.environ),
         timeout=300)
    python = root / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root, env=dict(os.environ)).stdout.strip())
    # When the tests run in a venv themselves, --system-site-packages reaches only the base
    # interpreter's packages: list this environment's too. Plain path lines, so its .pth files
    # (the editable install of this checkout among them) are not run.
    (purelib / "test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
         cwd=root, env=dict(os.environ), timeout=300)
    return python


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    """A folder that, first on ``PYTHONPATH``, makes ``import imageio_ffmpeg`` fail (the plugin is absent)."""
    folder = tmp_path_factory.mktemp("no_ffmpeg_plugin")
    (folder / "imageio_ffmpeg.py").write_text(
        'raise ImportError("imageio-ffmpeg is hidden by tests/test_wheel.py: the plugin is absent")\n')
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Where the jobs run: a temporary folder, outside the checkout and outside any git repository."""
    folder = tmp_path_factory.mktemp("jobs")
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=folder, capture_output=True, text=True)
    assert inside.returncode != 0, f"{folder} is inside a git work tree"
    return folder


def _env(mode: str, shim: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               MUJOCO_GL=env.get("MUJOCO_GL", "egl"), PYOPENGL_PLATFORM=env.get("PYOPENGL_PLATFORM", "egl"))
    if mode == "no_ffmpeg_plugin":
        env["PYTHONPATH"] = str(shim)
    return env


def test_wheel_ships_every_module_and_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{PACKAGE_DIRS[folder].replace('.', '/')}/{p.relative_to(REPO / folder)}"
                for folder in PACKAGE_DIRS for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".yaml")}
    assert expected - names == set(), "in the sources but not in the wheel"
    assert any(n.startswith("avbr/configs/pretrain/experiment/") for n in expected)  # nested groups counted


@pytest.mark.parametrize("mode", MODES)
def test_installed_package_is_the_wheel(venv, shim, workdir, mode):
    code = ("import importlib.util, json, avbr, avbr.eval, avbr.configs; "
            "print(json.dumps({'files': [avbr.__file__, avbr.eval.__file__, avbr.configs.__file__], "
            "'plugin': getattr(importlib.util.find_spec('imageio_ffmpeg'), 'origin', None)}))")
    got = json.loads(_run([str(venv), "-c", code], workdir, _env(mode, shim)).stdout.splitlines()[-1])
    prefix = str(venv.parent.parent)
    assert all(f.startswith(prefix) for f in got["files"]), got  # the wheel, not the editable checkout
    if mode == "no_ffmpeg_plugin":
        assert got["plugin"] == str(shim / "imageio_ffmpeg.py")
        hidden = subprocess.run([str(venv), "-c", "import imageio_ffmpeg"], cwd=workdir, env=_env(mode, shim),
                                capture_output=True, text=True)
        assert hidden.returncode != 0 and "the plugin is absent" in hidden.stderr


@pytest.mark.parametrize("mode", MODES)
def test_model_summary(venv, shim, workdir, mode):
    out = _run([str(venv), "-m", "avbr.models", "--summary"], workdir, _env(mode, shim)).stdout
    assert "| two_stream | tiny |" in out and "| video_predictor | base |" in out


@pytest.mark.parametrize("mode", MODES)
def test_pretraining_smoke_run(venv, shim, workdir, mode):
    out = workdir / f"pretrain_{mode}"
    _run([str(venv), "-m", "avbr.train", "train.total_steps=5", "wandb.mode=disabled", f"train.output_dir={out}",
          "model.encoder_kwargs={preset: tiny, img_size: 32, patch_size: 8, depth: 3}",
          "++model.decoder_kwargs={width: 32, min_width: 16}", "data.num_workers=0", "train.batch_size=4",
          "train.ckpt_every=5", "train.log_every=1", "optim.warmup_steps=1",
          "data.sources.shapes.kwargs.size=32", "data.sources.shape_stills.kwargs.size=32"],
         workdir, _env(mode, shim))
    record = json.loads((out / "run.json").read_text())
    assert record["results"]["finished"] and record["results"]["steps_done"] == 5
    assert (out / "config.yaml").is_file() and any((out / "encoder").iterdir())


@pytest.fixture(scope="module")
def lift_demos(venv, shim, workdir) -> Path:
    """Two scripted-expert Lift demos at 32 px, written by the installed ``make_demos``."""
    out = workdir / "demos"
    _run([str(venv), "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=2", "workers=1",
          "suite.camera_size=32", f"out={out}", f"hydra.run.dir={out}/hydra"], workdir, _env("no_ffmpeg_plugin", shim))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_lift_evaluation_with_a_video(venv, shim, workdir, lift_demos, mode):
    pytest.importorskip("robosuite")
    out = workdir / f"eval_{mode}"
    proc = _run([str(venv), "-m", "avbr.eval.libero", "encoder=timm_vit", "encoder.source=random",
                 "encoder.arch=vit_tiny_patch16_224", "encoder.img_size=32", "encoder.device=cpu",
                 "++encoder.model_kwargs.depth=1", "suite=robosuite_lift", "suite.camera_size=32",
                 "suite.max_steps=10", "episodes_per_task=2", "workers=1", f"demos.dir={lift_demos}",
                 f"demos.cache_dir={workdir / f'cache_{mode}'}", "policy.epochs=2", "policy.hidden_dim=32",
                 "videos_per_task=1", "wandb.mode=disabled", f"out_dir={out}"], workdir, _env(mode, shim))
    assert "[eval] videos: libx264 MP4 at 20 fps" in proc.stdout  # the start-up check, before the rollouts

    results = json.loads((out / "results.json").read_text())
    assert results["suite_success"]["episodes"] == 2
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 2
    assert (out / "results.csv").read_text().splitlines()[-1].startswith("robosuite_lift,timm_vit,bc_mlp,ALL,")
    assert "| ALL |" in (out / "summary.md").read_text()
    first = results["episodes"][0]
    assert first["video"] and results["episodes"][1]["video"] is None  # videos_per_task=1
    with av.open(str(out / "videos" / first["video"])) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 20  # the control rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == first["length"] and frames[0].shape == (32, 32, 3)  # one frame per policy step
    assert max(float(f.std()) for f in frames) > 5  # a rendered scene, not a blank frame

    report = workdir / f"report_{mode}"
    _run([str(venv), "-m", "avbr.eval.report", f"runs=[{out}]", f"out={report}"], workdir, _env(mode, shim))
    assert f"videos/{first['video']}" in (report / "report.md").read_text()
    assert (report / "report.html").stat().st_size > 0 and (report / "success.png").stat().st_size > 0


def test_vla_finetune_smoke_run(venv, shim, workdir):
    out = workdir / "vla"
    _run([str(venv), "-m", "avbr.adapters.vla.finetune", "vla=openvla_tiny", "data.synthetic=true", "steps=5",
          "device=cpu", f"out_dir={out}"], workdir, _env("no_ffmpeg_plugin", shim))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and (out / "config.yaml").is_file()
