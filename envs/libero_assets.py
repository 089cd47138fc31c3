"""LIBERO asset resolution and a non-interactive LIBERO config.

Two problems of the ``libero`` package (PyPI fork 0.1.1 and the official repository) are solved
here, before ``libero.libero`` is ever imported:

1. **The config prompt.** Importing ``libero.libero`` reads ``$LIBERO_CONFIG_PATH/config.yaml``
   (default ``~/.libero/config.yaml``) and, if the file is missing, asks questions through
   ``input()``, which hangs any non-interactive run. :func:`ensure_libero_config` writes a
   project-owned config (``~/.cache/avbr/libero/config.yaml``, keys ``benchmark_root``,
   ``bddl_files``, ``init_states``, ``datasets``, ``assets``) and points ``LIBERO_CONFIG_PATH`` at
   it, unless the user already set ``LIBERO_CONFIG_PATH`` to a directory holding a config.
   Spawned workers inherit the variable.
2. **The assets** (scene XMLs, meshes, textures; the PyPI wheel ships none). They are looked up
   in this order (first existing directory wins), see :func:`resolve_assets_dir`:

   1. an explicit directory (``SuiteConfig.assets_dir``, Hydra ``suite.assets_dir=...``);
   2. the environment variable ``AVBR_LIBERO_ASSETS``;
   3. the libero package's own location, ``<site-packages>/libero/libero/assets``;
   4. the libero package's download cache, ``~/.cache/libero/assets`` (filled by
      ``libero.libero.utils.download_utils.download_assets_from_huggingface()``).

   The chosen directory is installed as the package's cached asset path
   (``libero.libero._assets_path_cache``, which ``libero.libero.get_assets_path()`` returns), so
   the package never tries to download at scene-build time.

MuJoCo is pinned to 3.3.2 for LIBERO (pyproject extra ``libero``): MuJoCo >= 3.3.3 renders the
LIBERO-Object floors darker and >= 3.4 changes the physics of libero_spatial task 5 (and breaks
robosuite 1.4 in two places), so success rates and frames would not match the benchmark.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import yaml
from avbr.cli import UserError

ASSETS_ENV_VAR = "AVBR_LIBERO_ASSETS"
LIBERO_CONFIG_ENV_VAR = "LIBERO_CONFIG_PATH"
PROJECT_LIBERO_CONFIG_DIR = Path.home() / ".cache" / "avbr" / "libero"
LIBERO_DOWNLOAD_CACHE = Path.home() / ".cache" / "libero" / "assets"
# Sub-folders every complete asset tree has (the libero package checks the same ones).
REQUIRED_ASSET_DIRS = ("articulated_objects", "stable_scanned_objects", "turbosquid_objects",
                       "stable_hope_objects", "scenes")


class LiberoSetupError(UserError, RuntimeError):
    """The libero package, its config, or its assets are not usable."""


def libero_package_dir() -> Path:
    """Return ``<site-packages>/libero/libero`` without importing it (importing may prompt).

    Raises:
        LiberoSetupError: the ``libero`` package is not installed.
    """
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoSetupError(
            "the `libero` package is not installed; install the LIBERO extra: "
            "`pip install -e '.[libero]'` (libero==0.1.1, robosuite==1.4.0, mujoco==3.3.2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "libero"


def _is_asset_tree(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in REQUIRED_ASSET_DIRS)


def asset_candidates(explicit: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched for assets, in priority order, as ``(source, path)`` pairs."""
    candidates: list[tuple[str, Path]] = []
    if explicit:
        candidates.append(("config assets_dir", Path(explicit).expanduser()))
    if os.environ.get(ASSETS_ENV_VAR):
        candidates.append((f"${ASSETS_ENV_VAR}", Path(os.environ[ASSETS_ENV_VAR]).expanduser()))
    candidates.append(("libero package", libero_package_dir() / "assets"))
    candidates.append(("libero download cache", LIBERO_DOWNLOAD_CACHE))
    return candidates


def resolve_assets_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Find the LIBERO asset directory (see the module docstring for the search order).

    Args:
        explicit: a directory given in the config; when set it must be a complete asset tree.

    Returns:
        Absolute path of a directory holding ``scenes/``, ``stable_scanned_objects/``, ...

    Raises:
        LiberoSetupError: nothing found; the message lists the places searched and both ways to
            get the assets (the libero package's download, or a local directory).
    """
    candidates = asset_candidates(explicit)
    if explicit and not _is_asset_tree(candidates[0][1]):
        raise LiberoSetupError(
            f"assets_dir={explicit!s} is not a LIBERO asset tree (it needs the sub-folders "
            f"{', '.join(REQUIRED_ASSET_DIRS)}); point suite.assets_dir at the folder that holds them "
            f"(LIBERO's libero/libero/assets), or drop the override to search {ASSETS_ENV_VAR} and the defaults"
        )
    for _, path in candidates:
        if _is_asset_tree(path):
            return path.resolve()
    searched = "\n".join(f"  - {src}: {path}" for src, path in candidates)
    raise LiberoSetupError(
        "no LIBERO assets found. Searched:\n" + searched + "\n"
        "Get them in one of two ways:\n"
        "  1. let the libero package download them (needs internet): python -c \"from "
        "libero.libero.utils.download_utils import download_assets_from_huggingface as d; d()\" "
        f"(writes {LIBERO_DOWNLOAD_CACHE}), or clone github.com/Lifelong-Robot-Learning/LIBERO and "
        "copy libero/libero/assets into the package location above;\n"
        f"  2. point AVBR at a local copy: `export {ASSETS_ENV_VAR}=/path/to/assets` or the Hydra "
        "override `suite.assets_dir=/path/to/assets` (the folder that holds scenes/, textures/, ...)."
    )


def ensure_libero_config(assets_dir: Path) -> Path:
    """Make sure ``import libero.libero`` finds a config file and never calls ``input()``.

    Args:
        assets_dir: the resolved asset directory, written as the config's ``assets`` key.

    Returns:
        The config file in use. Sets ``$LIBERO_CONFIG_PATH`` when it writes the project's own.
    """
    user_dir = os.environ.get(LIBERO_CONFIG_ENV_VAR)
    if user_dir and user_dir != str(PROJECT_LIBERO_CONFIG_DIR) and (Path(user_dir) / "config.yaml").is_file():
        return Path(user_dir) / "config.yaml"
    root = libero_package_dir()
    config = {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(assets_dir),
    }
    PROJECT_LIBERO_CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    path = PROJECT_LIBERO_CONFIG_DIR / "config.yaml"
    current = yaml.safe_load(path.read_text()) if path.is_file() else None
    if current != config:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(yaml.safe_dump(config))
        tmp.replace(path)
    os.environ[LIBERO_CONFIG_ENV_VAR] = str(PROJECT_LIBERO_CONFIG_DIR)
    return path


def prepare_libero(assets_dir: str | os.PathLike | None = None) -> Path:
    """Resolve assets, write the config, import ``libero.libero`` and pin its asset path.

    Call this (in every process) before building any LIBERO environment.

    Returns:
        The asset directory in use.
    """
    assets = resolve_assets_dir(assets_dir)
    ensure_libero_config(assets)
    import libero.libero as libero_root  # noqa: PLC0415 - must follow ensure_libero_config

    libero_root._assets_path_cache = str(assets)
    return assets
