"""The summary CLI prints its table for every registered model."""

import subprocess
import sys


def test_summary_prints_every_model():
    out = subprocess.run(
        [sys.executable, "-m", "avbr.models", "--summary", "--presets", "tiny", "--img-size", "128"],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("two_stream", "single_stream", "early_fusion", "m_only", "p_only", "video_predictor"):
        assert f"| {name} | tiny |" in out
