"""``python eval/bench.py datasets`` runs by path and reports pairs/s per codec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_datasets_smoke(tmp_path) -> None:
    out = tmp_path / "datasets.json"
    cmd = [sys.executable, str(ROOT / "eval" / "bench.py"), "datasets", "--episodes", "2", "--length", "12",
           "--size", "64", "--codecs", "libx264", "--draws", "20", "--warmup", "2", "--workdir", str(tmp_path),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["results"]
    assert result["benchmark"] == "datasets" and result["cameras"] == 2 and row["codec"] == "libx264"
    assert row["frame_shape"] == [64, 64, 3] and row["pairs_per_s"] > 0 and row["pairs_per_cpu_s"] > 0
    assert list(tmp_path.iterdir()) == [out]  # the synthetic dataset is removed
