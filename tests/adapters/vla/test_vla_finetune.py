"""The fine-tuning entry point: configs compose, a short run writes metrics and a reloadable policy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import avbr.adapters.vla.finetune as ft
import pytest
import torch
from avbr.adapters.vla.factory import load_finetuned, make_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIG_DIR = str(Path(ft.__file__).resolve().parents[2] / "configs" / "vla")
OPTIONS = sorted(p.stem for p in Path(CONFIG_DIR, "vla").glob("*.yaml"))


@pytest.mark.parametrize("option", OPTIONS)
def test_every_vla_config_composes_and_validates(option: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("finetune", overrides=[f"vla={option}"])
    settings = OmegaConf.to_object(cfg)
    fields = dict(settings.vla)
    make_config(fields.pop("name"), fields)  # unknown fields or bad values raise here


def test_short_run_writes_metrics_and_reloadable_policy(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("finetune", overrides=[
            "vla=openvla_tiny", "vla.backbone.encoder.img_size=32", "data.synthetic=true", "data.synthetic_demos=1",
            "data.synthetic_length=6", "data.synthetic_size=32", "data.num_workers=0", "steps=3", "batch_size=2",
            "lora.r=4", "device=cpu", f"out_dir={tmp_path}",
        ])
    metrics = ft.run(OmegaConf.to_object(cfg))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["synthetic_data"] is True and len(saved["loss"]) == 3 and saved["samples_per_s"] > 0
    assert saved == json.loads(json.dumps(metrics))
    assert set(saved["provenance"]) >= {"git", "package", "versions", "host", "created_utc"}
    policy = load_finetuned(tmp_path / "policy")
    frames = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    out = policy.predict_chunk(frames, frames, torch.zeros(1, 8), ["reach the red block"])
    assert out.shape == (1, 1, 7)


def test_no_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.synthetic=true"):
        ft.demo_files(ft.DataSettings(), tmp_path)


@pytest.mark.slow
def test_cli_pi0_tiny(tmp_path: Path) -> None:
    """The documented command line, in a subprocess (Hydra parsing, logging, outputs)."""
    cmd = [sys.executable, "-m", "avbr.adapters.vla.finetune", "vla=pi0_tiny", "data.synthetic=true",
           "data.synthetic_demos=1", "data.synthetic_length=10", "steps=2", "batch_size=2", "device=cpu",
           "data.num_workers=0", f"out_dir={tmp_path}"]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["vla"] == "pi0" and len(metrics["loss"]) == 2
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "policy" / "model.safetensors").is_file()
