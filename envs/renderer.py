"""MuJoCo renderer selection, checked once at start-up, and each worker's rendering device.

MuJoCo picks its OpenGL backend from the ``MUJOCO_GL`` environment variable when it is first
imported, and robosuite/PyOpenGL read ``PYOPENGL_PLATFORM``. Both must therefore be set *before*
any simulator import, in the parent process, so that spawned workers inherit them. EGL contexts do
not survive ``fork``, which is why :mod:`avbr.envs.vector` starts its workers with ``spawn``.

Where each worker renders (:func:`worker_render_env`):

* **EGL on NVIDIA GPUs.** Workers are assigned round-robin to the visible GPUs through
  ``MUJOCO_EGL_DEVICE_ID``, which both MuJoCo's own EGL context (``mujoco.egl``) and robosuite's
  (``robosuite/renderers/context/egl_context.py``) read before ``CUDA_VISIBLE_DEVICES``. The
  visible GPUs are the ids listed in ``CUDA_VISIBLE_DEVICES`` when it is set (so a job given GPUs
  2,3 renders on 2 and 3 only), else every ``/dev/nvidiaN`` device.
* **Software rendering** (Mesa's llvmpipe, no GPU): llvmpipe renders with one thread per core, so
  one worker already fills a small machine; each worker gets its share of the cores as
  ``LP_NUM_THREADS``.

A value the user already exported (``MUJOCO_EGL_DEVICE_ID``, ``LP_NUM_THREADS``) always wins.
:func:`gl_vendor` reports which OpenGL implementation a process actually got (``NVIDIA
Corporation`` or ``Mesa``), which :class:`avbr.envs.vector.WorkerPool` logs at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
import re
from dataclasses import dataclass
from avbr.cli import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RendererBackend:
    """One headless OpenGL backend MuJoCo can use.

    Args:
        name: value of ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM``.
        library: shared-library names tried with ``ctypes`` (first that loads wins).
        system_package: Debian/Ubuntu package that provides the library.
    """

    name: str
    library: tuple[str, ...]
    system_package: str


RENDERERS: dict[str, RendererBackend] = {
    "egl": RendererBackend("egl", ("libEGL.so.1", "libEGL.so"), "libegl1"),
    "osmesa": RendererBackend("osmesa", ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"), "libosmesa6"),
}


class RendererError(UserError, RuntimeError):
    """The requested MuJoCo renderer cannot be used on this machine."""


def configure_renderer(name: str | None = None) -> RendererBackend:
    """Choose the headless renderer, check that its library loads, and export it to the env.

    Args:
        name: ``"egl"`` or ``"osmesa"``; ``None`` uses ``$MUJOCO_GL`` or else ``"egl"``.

    Returns:
        The chosen backend. ``MUJOCO_GL`` and ``PYOPENGL_PLATFORM`` are set accordingly.

    Raises:
        RendererError: unknown name, or the backend's shared library is missing (the message
            names the system package to install and the alternative backend).
    """
    chosen = name or os.environ.get("MUJOCO_GL") or "egl"
    if chosen not in RENDERERS:
        raise RendererError(
            f"unknown MuJoCo renderer {chosen!r} (from config or $MUJOCO_GL); "
            f"headless rendering supports: {sorted(RENDERERS)}"
        )
    backend = RENDERERS[chosen]
    errors = []
    for lib in backend.library:
        try:
            ctypes.CDLL(lib)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        other = next(b for b in RENDERERS.values() if b.name != chosen)
        raise RendererError(
            f"MUJOCO_GL={chosen} needs {backend.library[0]}, which cannot be loaded ({errors[-1]}). "
            f"Install it with `apt-get install {backend.system_package}`, or use "
            f"MUJOCO_GL={other.name} (package {other.system_package})."
        )
    os.environ["MUJOCO_GL"] = backend.name
    os.environ["PYOPENGL_PLATFORM"] = backend.name
    return backend


def visible_gpus() -> list[int]:
    """Ids of the NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` (integer ids) when
    set, else every ``/dev/nvidiaN``; empty on a machine without NVIDIA GPUs."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [int(x) for x in listed.split(",") if x.strip().isdigit()]
    return sorted(int(m.group(1)) for p in glob.glob("/dev/nvidia*") if (m := re.fullmatch(r"/dev/nvidia(\d+)", p)))


def resolve_workers(workers: int | str) -> int:
    """``workers`` as a count: an int as is, ``"auto"`` = the cores this process may run on."""
    if workers == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(workers, str) and not workers.isdigit():
        raise ValueError(f"workers must be a positive integer or 'auto', got {workers!r}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return int(workers)


def worker_render_env(index: int, num_workers: int, backend: str) -> dict[str, str]:
    """Environment variables that place worker ``index`` of ``num_workers`` on its renderer.

    EGL with visible GPUs: ``MUJOCO_EGL_DEVICE_ID`` = the ``index``-th visible GPU, round-robin.
    Otherwise (software rendering): ``LP_NUM_THREADS`` = this worker's share of the cores.
    Variables already in the environment are left out (the user's choice wins).
    """
    gpus = visible_gpus() if backend == "egl" else []
    if gpus:
        wanted = {"MUJOCO_EGL_DEVICE_ID": str(gpus[index % len(gpus)])}
    else:
        wanted = {"LP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // num_workers))}
    return {k: v for k, v in wanted.items() if k not in os.environ}


def gl_vendor() -> dict[str, str]:
    """``{"vendor", "renderer", "version"}`` of the OpenGL implementation MuJoCo gets in this
    process (a 16x16 offscreen context of the ``MUJOCO_GL`` backend, freed again)."""
    import mujoco  # noqa: PLC0415 - after MUJOCO_GL is set
    from OpenGL import GL  # noqa: PLC0415

    ctx = mujoco.GLContext(16, 16)
    ctx.make_current()
    try:
        return {key: GL.glGetString(name).decode() for key, name in
                (("vendor", GL.GL_VENDOR), ("renderer", GL.GL_RENDERER), ("version", GL.GL_VERSION))}
    finally:
        ctx.free()
