"""DINOv2: registry loads of the HF and timm formats match the library models called directly."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, Dinov2Model

from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=518)


@pytest.fixture
def hf_dir(tmp_path):
    model = Dinov2Model(Dinov2Config(**TINY)).eval()
    model.save_pretrained(tmp_path / "dinov2")
    return model, tmp_path / "dinov2"


def test_hf_matches_transformers(hf_dir, make_frames) -> None:
    model, directory = hf_dir
    enc = build_encoder(EncoderConfig(name="dinov2_hf", source=str(directory), img_size=56, device="cpu"))
    x = make_frames(2, 56, 56)
    px = enc.preprocess(x)  # its values against BitImageProcessor: test_preprocessing.py
    feats = enc.encode(None, x)
    with torch.no_grad():
        ref = model(pixel_values=px).last_hidden_state
    assert feats.grid == (4, 4)
    torch.testing.assert_close(feats.cls, ref[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.patches, ref[:, 1:], atol=1e-4, rtol=0)


def test_hf_strict_missing_and_unexpected_keys(hf_dir) -> None:
    _, directory = hf_dir
    sd = load_file(directory / "model.safetensors")
    del sd["layernorm.weight"]
    sd["bogus.weight"] = torch.zeros(1)
    save_file(sd, directory / "model.safetensors")
    with pytest.raises(StrictLoadError, match=r"1 missing, 1 unexpected, 0 shape mismatches; missing keys \(1\), first 5: layernorm\.weight; unexpected keys \(1\), first 5: bogus\.weight"):
        build_encoder(EncoderConfig(name="dinov2_hf", source=str(directory), device="cpu"))


def test_timm_matches_timm_own_loader(tmp_path, make_frames, tiny_timm) -> None:
    """A 518-px timm checkpoint loaded at 56 px equals timm's own pretrained path (which
    resamples pos_embed in its checkpoint_filter_fn)."""
    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **tiny_timm).eval()
    assert src.pos_embed.shape[1] == 37 * 37 + 1  # timm's default 518 px
    path = tmp_path / "model.safetensors"
    save_file(src.state_dict(), path)
    enc = build_encoder(EncoderConfig(name="dinov2_timm", source=str(path), img_size=56, model_kwargs=tiny_timm, device="cpu"))
    ref = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
        num_classes=0, img_size=56, **tiny_timm,
    ).eval()
    x = make_frames(2, 56, 56, seed=1)
    feats = enc.encode(None, x)
    with torch.no_grad():
        tokens = ref.forward_features(enc.preprocess(x))
    torch.testing.assert_close(feats.cls, tokens[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.patches, tokens[:, 1:], atol=1e-4, rtol=0)


def test_timm_strict_names_missing_key(tmp_path, tiny_timm) -> None:
    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56, **tiny_timm)
    sd = src.state_dict()
    del sd["blocks.0.attn.qkv.weight"]
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(StrictLoadError, match=r"blocks\.0\.attn\.qkv\.weight"):
        build_encoder(EncoderConfig(name="dinov2_timm", source=str(tmp_path), img_size=56, model_kwargs=tiny_timm, device="cpu"))


def test_hf_swiglu_giant_layout(tmp_path, make_frames) -> None:
    """The giant model's SwiGLU ``mlp.weights_in`` is split into gate/up projections."""
    model = Dinov2Model(Dinov2Config(**{**TINY, "use_swiglu_ffn": True})).eval()
    model.save_pretrained(tmp_path / "g")
    assert any(".mlp.weights_in." in k for k in load_file(tmp_path / "g" / "model.safetensors"))
    enc = build_encoder(EncoderConfig(name="dinov2_hf", source=str(tmp_path / "g"), img_size=28, device="cpu"))
    x = make_frames(2, 28, 28)
    with torch.no_grad():
        ref = model(pixel_values=enc.preprocess(x)).last_hidden_state
    torch.testing.assert_close(enc.encode(None, x).cls, ref[:, 0], atol=1e-4, rtol=0)
