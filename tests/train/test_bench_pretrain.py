"""``python eval/bench.py pretrain`` runs by path on a CPU with tiny sizes and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_pretrain_smoke(tmp_path) -> None:
    out = tmp_path / "pretrain.json"
    cmd = [sys.executable, str(ROOT / "eval" / "bench.py"), "pretrain", "--models", "two_stream_tiny",
           "--img-size", "32", "--patch-size", "8", "--depth", "3", "--batch", "2", "--steps", "2",
           "--warmup", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text())["results"][0]
    assert row["samples_per_s"] > 0 and row["reference"]["samples_per_s"] > 0
    # The reference ViT's depth is chosen so its FLOPs per sample match within one block.
    per_block = row["reference"]["flops_per_sample"] / row["reference"]["depth"]
    assert abs(row["flops_per_sample"] - row["reference"]["flops_per_sample"]) <= per_block
