"""``python eval/bench.py encoders`` runs by path on a CPU and reports the two-stream/ViT-S ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_encoders_smoke(tmp_path) -> None:
    out = tmp_path / "encoders.json"
    cmd = [sys.executable, str(ROOT / "eval" / "bench.py"), "encoders", "--only", "two_stream_small", "timm_vit_s16",
           "r3m_rn50", "--batch", "2", "--iters", "1", "--warmup", "0", "--precision", "fp32", "--device", "cpu",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["label"]: r for r in result["results"]}
    assert rows["r3m_rn50"]["feature_dim"] == 2048 and rows["timm_vit_s16"]["tokens"] == 196
    assert result["ratio_two_stream_small_over_timm_vit_s16"] == pytest.approx(
        rows["two_stream_small"]["images_per_s"] / rows["timm_vit_s16"]["images_per_s"], rel=1e-3)
