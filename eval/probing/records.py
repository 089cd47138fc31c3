"""The results record of the probe apps: a versioned JSON with the resolved config and provenance.

Every probe app writes ``<out>/config.yaml`` (resolved config), ``<out>/results.json`` and
``<out>/report.md``. ``results.json`` is::

    {"schema": "avbr.<app>", "schema_version": 2,
     "provenance": {...avbr.provenance.provenance(): git commit (null outside git), package, versions, host, UTC time...},
     "config": {...resolved config...}, "results": {...app specific...}}

Version 1 had ``"created"``, ``"git"`` and ``"versions"`` at the top level; they now live in
``"provenance"`` (``created_utc``, ``git``, ``versions``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from avbr.provenance import provenance

__all__ = ["SCHEMA_VERSION", "make_record", "write_record", "to_jsonable"]

SCHEMA_VERSION = 2


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
        "provenance": provenance(),
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
