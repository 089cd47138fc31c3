"""MuJoCo renderer selection, checked once at start-up.

MuJoCo picks its OpenGL backend from the ``MUJOCO_GL`` environment variable when it is first
imported, and robosuite/PyOpenGL read ``PYOPENGL_PLATFORM``. Both must therefore be set *before*
any simulator import, in the parent process, so that spawned workers inherit them. EGL contexts do
not survive ``fork``, which is why :mod:`avbr.envs.vector` starts its workers with ``spawn``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass


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


class RendererError(RuntimeError):
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
