"""CLIP: a CLIPModel save_pretrained folder loaded through the registry matches the vision tower."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder


@pytest.fixture
def clip_dir(tmp_path, tiny_hf):
    """A full CLIPModel (text + vision), the layout of the openai/clip-* hub checkpoints."""
    cfg = CLIPConfig(text_config=dict(tiny_hf, vocab_size=99), vision_config=dict(tiny_hf, image_size=32, patch_size=16), projection_dim=16)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(tmp_path / "clip")
    return model, tmp_path / "clip"


def test_matches_transformers(clip_dir, make_frames) -> None:
    model, directory = clip_dir
    enc = build_encoder(EncoderConfig(name="clip", source=str(directory), device="cpu"))
    assert enc.contract.resolution == (32, 32) and enc.contract.mean == tuple(OPENAI_CLIP_MEAN)
    x = make_frames(3, 32, 32)
    feats = enc.encode(None, x)
    px = enc.preprocess(x)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    manual = (torch.as_tensor(x).permute(0, 3, 1, 2) / 255.0 - mean) / std
    torch.testing.assert_close(px, manual, atol=1e-6, rtol=0)
    with torch.no_grad():
        out = model.vision_model(pixel_values=px)
        patches = model.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        image_embeds = model.get_image_features(pixel_values=px).pooler_output  # projected embedding
    torch.testing.assert_close(feats.cls, out.pooler_output, atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.patches, patches, atol=1e-4, rtol=0)
    # cls is the post-LayerNorm CLS that CLIP's projection consumes
    torch.testing.assert_close(model.visual_projection(feats.cls), image_embeds, atol=1e-4, rtol=0)


def test_vision_only_folder_loads(tmp_path, tiny_hf, make_frames) -> None:
    vision = CLIPVisionModel(CLIPModel.config_class.sub_configs["vision_config"](**tiny_hf, image_size=32, patch_size=16)).eval()
    vision.save_pretrained(tmp_path / "v")
    enc = build_encoder(EncoderConfig(name="clip", source=str(tmp_path / "v"), device="cpu"))
    x = make_frames(2, 32, 32)
    with torch.no_grad():
        ref = vision(pixel_values=enc.preprocess(x)).pooler_output
    torch.testing.assert_close(enc.encode(None, x).cls, ref, atol=1e-4, rtol=0)


def test_strict_names_missing_key(clip_dir) -> None:
    _, directory = clip_dir
    sd = load_file(directory / "model.safetensors")
    del sd["vision_model.post_layernorm.bias"]
    save_file(sd, directory / "model.safetensors")
    with pytest.raises(StrictLoadError, match=r"post_layernorm\.bias"):
        build_encoder(EncoderConfig(name="clip", source=str(directory), device="cpu"))


def test_old_checkpoint_position_ids_buffer_is_dropped(clip_dir, make_frames) -> None:
    """transformers < 4.31 saved ``vision_model.embeddings.position_ids``; it is dropped by name."""
    model, directory = clip_dir
    sd = load_file(directory / "model.safetensors")
    n = model.config.vision_config.image_size // model.config.vision_config.patch_size
    sd["vision_model.embeddings.position_ids"] = torch.arange(n * n + 1)[None]
    save_file(sd, directory / "model.safetensors")
    enc = build_encoder(EncoderConfig(name="clip", source=str(directory), device="cpu"))
    assert enc.encode(None, make_frames(1, 32, 32)).cls.shape == (1, 32)
