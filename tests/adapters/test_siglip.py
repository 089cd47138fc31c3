"""SigLIP: a SiglipModel save_pretrained folder loaded through the registry matches the tower."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import SiglipConfig, SiglipModel

from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder


@pytest.fixture
def siglip_dir(tmp_path, tiny_hf):
    cfg = SiglipConfig(text_config=dict(tiny_hf, vocab_size=99), vision_config=dict(tiny_hf, image_size=32, patch_size=16))
    model = SiglipModel(cfg).eval()
    model.save_pretrained(tmp_path / "siglip")
    return model, tmp_path / "siglip"


def test_matches_transformers(siglip_dir, make_frames) -> None:
    model, directory = siglip_dir
    enc = build_encoder(EncoderConfig(name="siglip", source=str(directory), device="cpu"))
    x = make_frames(3, 32, 32)
    px = enc.preprocess(x)
    torch.testing.assert_close(px, torch.as_tensor(x).permute(0, 3, 1, 2) / 127.5 - 1.0, atol=1e-6, rtol=0)
    feats = enc.encode(None, x)
    with torch.no_grad():
        out = model.vision_model(pixel_values=px)
    assert feats.grid == (2, 2) and feats.patches.shape == (3, 4, 32)
    torch.testing.assert_close(feats.cls, out.pooler_output, atol=1e-4, rtol=0)  # the MAP head
    torch.testing.assert_close(feats.patches, out.last_hidden_state, atol=1e-4, rtol=0)


def test_strict_names_missing_key(siglip_dir) -> None:
    _, directory = siglip_dir
    sd = load_file(directory / "model.safetensors")
    key = next(k for k in sd if k.startswith("vision_model.head.") and k.endswith("probe"))
    del sd[key]
    save_file(sd, directory / "model.safetensors")
    with pytest.raises(StrictLoadError, match=r"head\.probe"):
        build_encoder(EncoderConfig(name="siglip", source=str(directory), device="cpu"))
