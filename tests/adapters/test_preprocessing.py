"""Known answers for the adapters' resize/crop/normalise: the real preprocessing classes, configured
as the official checkpoints are, on frames of several sizes (square, non-square, smaller and
larger than the model input, and already at it).

References (configured by hand from the published records; nothing is downloaded):
    * ``dinov2_hf``: transformers ``BitImageProcessor`` (torchvision backend, the default class) and
      ``BitImageProcessorPil`` with ``facebook/dinov2-small/preprocessor_config.json``.
    * ``clip``: ``CLIPImageProcessor`` with ``openai/clip-vit-base-patch16``'s record.
    * ``siglip``: ``SiglipImageProcessor`` with ``google/siglip-base-patch16-224``'s record.
    * ``timm_vit``: ``timm.data.create_transform(**resolve_data_config({}, model=m))`` for
      ``vit_small_patch16_224.augreg_in21k_ft_in1k`` (its ``pretrained_cfg``: crop_pct 0.9,
      bicubic, mean = std = 0.5), on a PIL image.

Random-noise frames are used: any one-pixel shift of the crop or a one-pixel change of the resize
size shows up as tens of grey levels, where the exact pipeline agrees to the level.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from transformers import BitImageProcessor, CLIPImageProcessor, Dinov2Config, Dinov2Model, SiglipImageProcessor

from avbr.adapters import EncoderConfig, build_encoder

# facebook/dinov2-{small,base,large,giant}/preprocessor_config.json
DINOV2_RECORD = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256},
}
# openai/clip-vit-base-patch16/preprocessor_config.json
CLIP_RECORD = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "size": 224,
}
# google/siglip-base-patch16-224/preprocessor_config.json
SIGLIP_RECORD = {
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5], "resample": 3, "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}
TINY_HF = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
# (H, W) of the input frames. 227 x 301 makes the DINOv2 resize 256 x 339, whose crop offset
# (339 - 224) / 2 = 57.5 is 57 in transformers and 58 in torchvision; 248 x 259 does the same for
# timm's torchvision CenterCrop (17.5 -> 18).
SIZES = [(224, 224), (128, 128), (256, 256), (480, 640), (227, 301), (301, 227), (248, 259)]


def _pil_bit():
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    return BitImageProcessorPil(**DINOV2_RECORD)


def _hf_reference(name: str):
    return {
        "dinov2_hf": lambda: BitImageProcessor(**DINOV2_RECORD),
        "dinov2_hf_pil": _pil_bit,
        "clip": lambda: CLIPImageProcessor(**CLIP_RECORD),
        "siglip": lambda: SiglipImageProcessor(**SIGLIP_RECORD),
    }[name]()


def _encoder(name: str):
    kw = dict(TINY_HF) if name == "dinov2_hf" else dict(TINY_HF, intermediate_size=64)
    if name == "timm_vit":
        kw = dict(embed_dim=32, depth=1, num_heads=2)
    return build_encoder(EncoderConfig(name=name, model_kwargs=kw, device="cpu"))


def _grey_levels(enc, px: torch.Tensor) -> torch.Tensor:
    """Normalised ``[B, 3, H, W]`` back to 0-255 units with the encoder's own mean/std."""
    c = enc.contract
    return (px * torch.tensor(c.std).view(1, 3, 1, 1) + torch.tensor(c.mean).view(1, 3, 1, 1)) * 255.0


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name, reference", [("dinov2_hf", "dinov2_hf"), ("clip", "clip"), ("siglip", "siglip")])
def test_equals_transformers_processor(name: str, reference: str, size: tuple[int, int]) -> None:
    """Bit-exact (to float rounding) with the transformers processor the checkpoints ship with."""
    enc, img = _encoder(name), _noise(*size)
    assert tuple(enc.contract.mean) == pytest.approx(_hf_reference(reference).image_mean)
    ours = _grey_levels(enc, enc.preprocess(img[None]))
    ref = _grey_levels(enc, _hf_reference(reference)(images=img, return_tensors="pt")["pixel_values"])
    assert ours.shape == ref.shape == (1, 3, 224, 224)
    assert float((ours - ref).abs().max()) < 1e-3


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dinov2_within_one_level_of_the_pil_processor(size: tuple[int, int]) -> None:
    """The PIL implementation of the same record: a grey level or two on under 2% of pixels."""
    pytest.importorskip("transformers.models.bit.image_processing_pil_bit")
    enc, img = _encoder("dinov2_hf"), _noise(*size, seed=1)
    diff = (_grey_levels(enc, enc.preprocess(img[None])) - _grey_levels(enc, _pil_bit()(images=img, return_tensors="pt")["pixel_values"])).abs()
    assert float(diff.max()) <= 2.0 + 1e-3 and float((diff > 0.5).float().mean()) < 0.02


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_timm_vit_within_one_level_of_timm_transform(size: tuple[int, int]) -> None:
    """timm's eval transform resizes the short side to floor(224 / 0.9) = 248 (not 249) on every
    input, 224 included, then CenterCrop(224); PIL vs torchvision uint8 resizing: <= 2 levels on
    under 2% of pixels (a one-pixel change of size or crop moves about 20% by tens of levels)."""
    model = timm.create_model("vit_small_patch16_224.augreg_in21k_ft_in1k", pretrained=False, num_classes=0)
    data_cfg = resolve_data_config({}, model=model)
    assert (data_cfg["crop_pct"], data_cfg["interpolation"], data_cfg["mean"]) == (0.9, "bicubic", (0.5, 0.5, 0.5))
    transform = create_transform(**data_cfg)
    enc, img = _encoder("timm_vit"), _noise(*size, seed=2)
    ours = _grey_levels(enc, enc.preprocess(img[None]))
    ref = _grey_levels(enc, transform(Image.fromarray(img))[None])
    diff = (ours - ref).abs()
    assert ours.shape == ref.shape == (1, 3, 224, 224)
    assert float(diff.max()) <= 2.0 + 1e-3 and float((diff > 0.5).float().mean()) < 0.02


def test_dinov2_frames_at_224_follow_the_processor(tmp_path) -> None:
    """224-px frames go 224 -> 256 -> crop 224 like BitImageProcessor: the CLS token of a
    checkpoint equals the model run on the processor's output (it used to differ by ~0.3 when
    224-px frames skipped the resize)."""
    model = Dinov2Model(Dinov2Config(**TINY_HF, patch_size=14, image_size=518)).eval()
    model.save_pretrained(tmp_path / "d")
    enc = build_encoder(EncoderConfig(name="dinov2_hf", source=str(tmp_path / "d"), device="cpu"))
    frames = np.stack([_noise(224, 224, seed=s) for s in range(2)])
    px = BitImageProcessor(**DINOV2_RECORD)(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = model(pixel_values=px).last_hidden_state
    feats = enc.encode(None, frames)
    torch.testing.assert_close(feats.cls, ref[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.patches, ref[:, 1:], atol=1e-4, rtol=0)
