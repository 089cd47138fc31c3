"""Each simulator worker's rendering device: GPUs round-robin through MUJOCO_EGL_DEVICE_ID
(honouring CUDA_VISIBLE_DEVICES), else the software renderer's share of the cores."""

import pytest

from avbr.envs.renderer import resolve_workers, visible_gpus, worker_render_env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in ("CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID", "LP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)


def test_workers_go_round_robin_over_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == [2, 5]
    ids = [worker_render_env(i, 5, "egl")["MUJOCO_EGL_DEVICE_ID"] for i in range(5)]
    assert ids == ["2", "5", "2", "5", "2"]


def test_no_gpu_means_software_rendering_with_a_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_render_env(0, 4, "egl") == {"LP_NUM_THREADS": "2"}
    assert worker_render_env(0, 16, "osmesa") == {"LP_NUM_THREADS": "1"}


def test_osmesa_never_gets_a_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert "MUJOCO_EGL_DEVICE_ID" not in worker_render_env(0, 1, "osmesa")


def test_the_users_own_setting_wins(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("MUJOCO_EGL_DEVICE_ID", "1")
    assert worker_render_env(0, 2, "egl") == {}


def test_resolve_workers(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert resolve_workers("auto") == 3
    assert resolve_workers(4) == 4 and resolve_workers("4") == 4
    with pytest.raises(ValueError, match="auto"):
        resolve_workers("many")
    with pytest.raises(ValueError, match=">= 1"):
        resolve_workers(0)
