"""The shared adapter interface: frame checks, numpy/torch inputs, frames='both', resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbr.adapters import EncoderConfig, build_encoder

TINY = dict(embed_dim=32, depth=1, num_heads=2)


@pytest.fixture
def enc():
    return build_encoder(EncoderConfig(name="timm_vit", img_size=32, model_kwargs=TINY, device="cpu"))


def test_numpy_and_torch_inputs_agree(enc, make_frames) -> None:
    x = make_frames(2, 32, 32)
    torch.testing.assert_close(enc.encode(None, x).cls, enc.encode(None, torch.from_numpy(x)).cls)


def test_rejects_float_or_chw_frames(enc, make_frames) -> None:
    x = make_frames(2, 32, 32)
    with pytest.raises(ValueError, match=r"uint8 \[B, H, W, 3\]"):
        enc.encode(None, x.astype("float32"))
    with pytest.raises(ValueError, match=r"uint8 \[B, H, W, 3\]"):
        enc.encode(None, x.transpose(0, 3, 1, 2).copy())


def test_frames_both_doubles_d(make_frames) -> None:
    one = build_encoder(EncoderConfig(name="timm_vit", img_size=32, model_kwargs=TINY, device="cpu"))
    torch.manual_seed(0)
    both = build_encoder(EncoderConfig(name="timm_vit", img_size=32, model_kwargs=TINY, frames="both", device="cpu"))
    both.load_state_dict(one.state_dict())
    prev, curr = make_frames(2, 32, 32, seed=1), make_frames(2, 32, 32, seed=2)
    f = both.encode(prev, curr)
    assert both.feature_dim == 2 * one.feature_dim == f.cls.shape[1] == f.patches.shape[2]
    torch.testing.assert_close(f.cls, torch.cat([one.encode(None, prev).cls, one.encode(None, curr).cls], -1))
    assert set(f.stream_cls) == {"prev", "curr"}
    with pytest.raises(ValueError, match="needs prev"):
        both.encode(None, curr)


def test_center_crop_geometry(make_frames) -> None:
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    enc = build_encoder(EncoderConfig(name="dinov2_hf", img_size=56, model_kwargs=tiny, device="cpu"))
    assert enc.preprocess(make_frames(1, 100, 150)).shape == (1, 3, 56, 56)
    # an image already at the resolution is not resized or cropped
    x = make_frames(1, 56, 56)
    mean, std = torch.tensor(enc.contract.mean).view(1, 3, 1, 1), torch.tensor(enc.contract.std).view(1, 3, 1, 1)
    torch.testing.assert_close(enc.preprocess(x) * std + mean, torch.as_tensor(x).permute(0, 3, 1, 2) / 255.0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["clip", "dinov2_hf", "siglip"])
def test_contract_matches_the_authors_image_processor(name: str) -> None:
    """Resize/crop/normalise of the contract = the transformers processor of the hub checkpoints
    (up to the uint8 rounding those processors do after resizing: about one grey level)."""
    from transformers import BitImageProcessor, CLIPImageProcessor, SiglipImageProcessor

    processors = {
        "clip": CLIPImageProcessor(),
        # facebook/dinov2-* preprocessor_config.json
        "dinov2_hf": BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                       image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        "siglip": SiglipImageProcessor(),
    }
    yy, xx = np.mgrid[0:240, 0:320]  # a smooth, non-square test image
    img = (np.sin(xx / 15.0)[..., None] * 60 + np.cos(yy / 11.0)[..., None] * 60 + 128 + np.array([0, 20, -20]))
    img = img.clip(0, 255).astype(np.uint8)
    kw = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    if name != "dinov2_hf":
        kw["intermediate_size"] = 64
    enc = build_encoder(EncoderConfig(name=name, model_kwargs=kw, device="cpu"))
    ours = enc.preprocess(img[None])
    ref = processors[name](images=img, return_tensors="pt")["pixel_values"]
    assert ours.shape == ref.shape == (1, 3, 224, 224)
    assert float((ours - ref).abs().max()) < 0.03 and float((ours - ref).abs().mean()) < 0.01
