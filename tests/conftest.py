"""Suite-wide test settings and fixtures.

- One intra-op torch thread: on shared 2-core CI machines, torch's thread pool spinning against
  other processes made tiny steps 10-25x slower than single-threaded ones; every test here runs
  tiny models.
- The offline LIBERO asset copy of this workplace (``../shared/libero-assets`` beside the checkout,
  or ``$AVBR_TEST_LIBERO_ARCHIVE``), unpacked once into ``~/.cache/avbr/libero-assets``; LIBERO
  tests skip with the reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _assets_archive() -> Path:
    if "AVBR_TEST_LIBERO_ARCHIVE" in os.environ:
        return Path(os.environ["AVBR_TEST_LIBERO_ARCHIVE"])
    candidates = [REPO.parent / "shared" / "libero-assets" / "libero-assets.tar.xz",
                  Path("/work/shared/libero-assets/libero-assets.tar.xz")]
    return next((p for p in candidates if p.is_file()), candidates[0])


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ASSETS_ARCHIVE = _assets_archive()
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
