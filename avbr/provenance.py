"""Provenance: which code, packages and machine produced a file. The one place every writer asks.

Every record the project writes (evaluation ``results.json`` / ``summary.md`` / ``results.csv``,
probe records, pretraining ``run.json``, the VLA fine-tune's ``metrics.json``, benchmark JSONs)
embeds the dict of :func:`provenance` (or, where a file must not depend on the clock or the host,
:func:`code_provenance`) under the key ``"provenance"``::

    {"git": {"commit": sha | None, "dirty": bool | None},
     "package": {"name": "avbr", "version": "0.1.0" | None, "files_sha256": hex},
     "versions": {"python": ..., "avbr": ..., "torch": ..., ...},
     "host": platform.node(), "platform": platform.platform(), "created_utc": ISO-8601}   # provenance() only

``git`` describes the checkout the code was imported from; outside a git checkout (an installed
wheel, a copied folder) both values are ``None``, and ``package`` still identifies the code:
the installed version and a sha256 over the installed source files (``*.py`` and ``*.yaml`` of
``avbr`` and its sub-packages, names relative to the package, so an editable checkout and a wheel
built from it hash alike). Every reader must accept ``commit: None``; :func:`describe_commit`
gives the one-line text the human-readable writers print.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata as _md
import importlib.util
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "git_state", "package_state", "versions", "code_provenance", "provenance", "describe_commit"]

#: The import packages whose files make up the installed code (pyproject ``[tool.setuptools]``).
PACKAGES = ("avbr", "avbr.adapters", "avbr.envs", "avbr.eval", "avbr.configs")
#: Distributions whose versions change numbers (missing ones are left out).
VERSIONED = ("avbr", "torch", "numpy", "timm", "transformers", "safetensors", "scikit-learn", "mujoco", "robosuite")
_SOURCE_SUFFIXES = (".py", ".yaml")


def _package_dirs() -> dict[str, Path]:
    """``{import name: folder}`` of every package in :data:`PACKAGES` (without importing them)."""
    out = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            out[name] = Path(next(iter(spec.submodule_search_locations))).resolve()
    return out


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()


def git_state(root: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding ``root``; ``None`` values outside one.

    Args:
        root: the source tree; default the folder above the imported ``avbr`` package. It counts as a
            checkout only when it is the top of a git work tree, so a wheel installed into a virtual
            environment that happens to live inside some repository is not attributed to that
            repository's commit.
    """
    root = Path(root) if root is not None else _package_dirs()["avbr"].parent
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return {"commit": None, "dirty": None}
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _files_sha256(dirs: Mapping[str, Path]) -> str:
    """sha256 over ``(package-relative name, bytes)`` of every source file, in name order."""
    roots = set(dirs.values())
    files: dict[str, Path] = {}
    for name, folder in dirs.items():
        for path in folder.rglob("*"):
            if path.suffix not in _SOURCE_SUFFIXES or "__pycache__" in path.parts or not path.is_file():
                continue
            # A sub-package installed inside its parent's folder (the wheel layout) is hashed under its own name.
            if any(r != folder and r in path.parents and folder in r.parents for r in roots):
                continue
            files[f"{name}/{path.relative_to(folder).as_posix()}"] = path
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\n".encode())
        h.update(hashlib.sha256(files[rel].read_bytes()).digest())
    return h.hexdigest()


def package_state() -> dict[str, Any]:
    """``{"name": "avbr", "version": installed version | None, "files_sha256": hex}`` of the running code."""
    try:
        version = _md.version("avbr")
    except _md.PackageNotFoundError:
        version = None
    return {"name": "avbr", "version": version, "files_sha256": _files_sha256(_package_dirs())}


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Python, the installed versions of :data:`VERSIONED`, and torch's build and CUDA version."""
    out = {"python": platform.python_version()}
    for pkg in VERSIONED:
        try:
            out[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            continue
    try:
        import torch  # noqa: PLC0415 - only for its build

        out["torch"] = torch.__version__  # with the local build tag (``+cu130``, ``+cpu``), which metadata drops
        if torch.version.cuda:
            out["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return out


def code_provenance() -> dict[str, Any]:
    """What identifies the code and its dependencies: ``{"git", "package", "versions"}``.

    Free of clocks and host names: a file that must come out identical when a run is resumed
    (evaluation ``results.json``) embeds this one.
    """
    return {"git": git_state(), "package": package_state(), "versions": dict(versions())}


def provenance() -> dict[str, Any]:
    """:func:`code_provenance` plus the host, its platform and the UTC time of the call."""
    return {**code_provenance(), "host": platform.node(), "platform": platform.platform(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def describe_commit(record: Mapping[str, Any] | None) -> str:
    """One line naming the code of a :func:`provenance` record (or of its ``"git"`` part alone).

    ``'1a2b3c4d5e (dirty)'`` in a checkout; ``'no git commit (avbr 0.1.0, files 9f8e7d6c)'``
    from an installed package; ``'unknown'`` when nothing was recorded.
    """
    record = record or {}
    git = record.get("git", record) or {}
    commit = git.get("commit")
    if commit:
        return f"{commit[:10]}{' (dirty)' if git.get('dirty') else ''}"
    package = record.get("package") or {}
    if package.get("version") or package.get("files_sha256"):
        files = (package.get("files_sha256") or "?")[:8]
        return f"no git commit ({package.get('name', 'avbr')} {package.get('version') or '?'}, files {files})"
    return "unknown"
