"""The model configs of configs/model compose and build; the summary CLI prints its table."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avbr.models import build_model_from_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODEL_CONFIGS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_config_builds(name):
    with initialize_config_dir(str(CONFIGS / "model"), version_base=None):
        cfg = OmegaConf.to_container(compose(config_name=name))
    size = dict(preset="tiny", img_size=32, patch_size=8, depth=3)
    if cfg["name"] == "video_predictor":
        cfg["encoder_kwargs"].update(size)
    else:
        cfg.update(size)
    assert build_model_from_cfg(cfg) is not None


def test_summary_prints_every_model():
    out = subprocess.run(
        [sys.executable, "-m", "avbr.models", "--summary", "--presets", "tiny", "--img-size", "128"],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("two_stream", "single_stream", "early_fusion", "m_only", "p_only", "video_predictor"):
        assert f"| {name} | tiny |" in out
