"""The feature tool: array and data-source inputs, the CLI, and its output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file

from avbr.adapters.features import FeaturesAppConfig, load_array_pairs, run

TINY = {"name": "timm_vit", "source": None, "img_size": 32, "device": "cpu", "model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}}


def test_array_layouts(tmp_path, make_frames) -> None:
    video = make_frames(4, 8, 8)
    np.save(tmp_path / "v.npy", video)
    prev, curr = load_array_pairs(str(tmp_path / "v.npy"), gap=2)
    assert (prev[3] == video[1]).all() and (prev[0] == video[0]).all() and (curr == video).all()
    np.savez(tmp_path / "p.npz", pairs=np.stack([video, video[::-1]], 1))
    prev, curr = load_array_pairs(str(tmp_path / "p.npz"))
    assert (prev == video).all() and (curr == video[::-1]).all()
    with pytest.raises(ValueError, match="uint8"):
        np.save(tmp_path / "f.npy", video.astype(np.float32))
        load_array_pairs(str(tmp_path / "f.npy"))


def test_data_source_input_keeps_actions_and_episodes(tmp_path) -> None:
    cfg = OmegaConf.structured(FeaturesAppConfig)
    cfg.encoder = TINY
    cfg.source.name = "procedural"
    cfg.source.kwargs = {"num_episodes": 2, "episode_length": 4, "size": 32}
    cfg.output = str(tmp_path / "f.safetensors")
    cfg.cache_dir = str(tmp_path / "cache")
    cfg.readout = "cls"
    out = load_file(run(cfg))
    assert out["features"].shape == (6, 32)  # 2 episodes x 3 pairs
    assert out["episode"].tolist() == [0, 0, 0, 1, 1, 1] and out["t"].tolist() == [0, 1, 2] * 2
    assert out["action"].shape[0] == 6
    with safe_open(cfg.output, "pt") as f:
        meta = json.loads(f.metadata()["avbr"])
    assert meta["encoder"] == "timm_vit" and len(meta["episodes"]) == 2


@pytest.mark.slow  # a fresh interpreter importing torch/transformers/hydra: ~30 s on a loaded CI machine
def test_cli(tmp_path, make_frames) -> None:
    np.save(tmp_path / "v.npy", make_frames(3, 40, 40))
    cmd = [sys.executable, "-m", "avbr.adapters.features", "encoder=timm_vit", "encoder.source=null", "encoder.img_size=32",
           "encoder.device=cpu", "+encoder.model_kwargs={embed_dim: 32, depth: 1, num_heads: 2}", f"input={tmp_path / 'v.npy'}",
           f"output={tmp_path / 'out.safetensors'}", "cache_dir=null", f"hydra.run.dir={tmp_path / 'hydra'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = load_file(tmp_path / "out.safetensors")
    assert out["cls"].shape == (3, 32) and out["patches"].shape == (3, 4, 32)
