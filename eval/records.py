"""The results record of the probe apps: a versioned JSON with the resolved config and provenance.

Every probe app writes ``<out>/config.yaml`` (resolved config), ``<out>/results.json`` and
``<out>/report.md``. ``results.json`` is::

    {"schema": "avbr.<app>", "schema_version": 1, "created": ISO-8601 UTC,
     "git": {"commit": sha | null, "dirty": bool | null}, "versions": {python, torch, numpy, avbr, ...},
     "config": {...resolved config...}, "results": {...app specific...}}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCHEMA_VERSION", "git_state", "versions", "make_record", "write_record", "to_jsonable"]

SCHEMA_VERSION = 1
_REPO = Path(__file__).resolve().parents[1]


def git_state(repo: Path = _REPO) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the source tree, ``None`` values outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str]:
    """Versions of the interpreter and the packages that change numbers."""
    import importlib.metadata as md  # noqa: PLC0415

    out = {"python": platform.python_version()}
    for pkg in ("avbr", "torch", "numpy", "timm", "transformers", "scikit-learn", "mujoco", "robosuite"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def to_jsonable(x: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (valid JSON)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def make_record(app: str, config: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The versioned record (see the module docstring)."""
    return {
        "schema": f"avbr.{app}",
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "versions": versions(),
        "config": to_jsonable(config),
        "results": to_jsonable(results),
    }


def write_record(out_dir: str | Path, app: str, config: dict[str, Any], results: dict[str, Any],
                 report_md: str, config_yaml: str) -> Path:
    """Write ``config.yaml``, ``results.json`` and ``report.md`` into ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_yaml)
    path = out / "results.json"
    path.write_text(json.dumps(make_record(app, config, results), indent=2, allow_nan=False))
    (out / "report.md").write_text(report_md)
    return path
