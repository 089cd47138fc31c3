"""Fixtures for the env tests: the offline LIBERO asset copy and small suite configs."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

ASSETS_ARCHIVE = Path(os.environ.get("AVBR_TEST_LIBERO_ARCHIVE",
                                     "/work/shared/libero-assets/libero-assets.tar.xz"))
ASSETS_CACHE = Path.home() / ".cache" / "avbr" / "libero-assets"


def _unpack_assets() -> Path:
    """Unpack the offline asset archive once into ``~/.cache/avbr/libero-assets``."""
    if (ASSETS_CACHE / "scenes").is_dir():
        return ASSETS_CACHE
    ASSETS_CACHE.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=ASSETS_CACHE.parent, prefix=".libero-assets-"))
    with tarfile.open(ASSETS_ARCHIVE) as tar:
        tar.extractall(staging, filter="data")
    try:
        staging.rename(ASSETS_CACHE)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return ASSETS_CACHE


@pytest.fixture(scope="session")
def libero_assets() -> Path:
    """Asset directory for LIBERO tests; skips when the offline archive is absent."""
    try:
        import libero  # noqa: F401
    except ImportError:
        pytest.skip("the libero package is not installed (pip install -e '.[libero]')")
    if not ASSETS_ARCHIVE.is_file() and not (ASSETS_CACHE / "scenes").is_dir():
        pytest.skip(f"LIBERO asset archive {ASSETS_ARCHIVE} not found (set AVBR_TEST_LIBERO_ARCHIVE)")
    return _unpack_assets()


@pytest.fixture
def libero_env_var(libero_assets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``AVBR_LIBERO_ASSETS`` at the unpacked copy (spawned workers inherit it)."""
    monkeypatch.setenv("AVBR_LIBERO_ASSETS", str(libero_assets))
    return libero_assets
