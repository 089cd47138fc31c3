"""``python eval/bench.py video`` runs by path and reports pairs/s per variant and their pixel agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_video_smoke(tmp_path) -> None:
    out = tmp_path / "video.json"
    cmd = [sys.executable, str(ROOT / "eval" / "bench.py"), "video", "--heights", "180", "--clips", "1", "--frames", "30",
           "--img-size", "64", "--short-side", "72", "--seconds", "0", "--min-draws", "8", "--workdir", str(tmp_path),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["results"]
    assert result["benchmark"] == "video" and row["height"] == 180
    assert row["full"]["decoded_shape"] == [180, 320, 3] and row["reduced"]["decoded_shape"] == [64, 114, 3]
    assert row["preresized"]["decoded_shape"] == [64, 114, 3] and row["full"]["mean_abs_diff_vs_full"] == 0
    for name in ("full", "reduced", "reduced_threads_auto", "preresized"):
        assert row[name]["pairs"] >= 8 and row[name]["pairs_per_cpu_s"] > 0
        assert row[name]["mean_abs_diff_vs_full"] < 8  # the same pairs in every variant
    assert list(tmp_path.iterdir()) == [out]  # the clips are removed
