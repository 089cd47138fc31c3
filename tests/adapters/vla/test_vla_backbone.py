"""The VLA vision backbone is a registry encoder: same weights, same preprocessing, same features."""

import numpy as np
import pytest
import torch
from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder
from avbr.adapters.vla.backbone import BackboneConfig, VisionTokens, build_backbone, pool_tokens, pooled_grid
from avbr.models import build_model, save_encoder
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, Dinov2Model


@pytest.fixture
def sources(tmp_path) -> dict[str, EncoderConfig]:
    """One two-frame encoder of ours and one one-frame HF encoder, each saved to a local folder in
    its own layout (``save_encoder``; ``save_pretrained``) and named through the registry."""
    torch.manual_seed(0)
    save_encoder(build_model("two_stream", preset="tiny", depth=3, img_size=32), tmp_path / "ours")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=14,
                             image_size=518)).save_pretrained(tmp_path / "dinov2")
    return {
        "two_stream": EncoderConfig(name="two_stream", source=str(tmp_path / "ours"), device="cpu"),
        "dinov2_hf": EncoderConfig(name="dinov2_hf", source=str(tmp_path / "dinov2"), img_size=56, device="cpu"),
    }


@pytest.mark.parametrize("name", ["two_stream", "dinov2_hf"])
def test_backbone_features_equal_the_adapters_own(sources, name: str) -> None:
    """Frames that are neither square nor at the encoder's size: the VLA's image tokens are the
    adapter's ``encode`` patches (its centre crop and normalisation), pooled and projected."""
    cfg = sources[name]
    adapter = build_encoder(cfg)
    tokens = VisionTokens(build_backbone(BackboneConfig(encoder=cfg, max_tokens=0)), out_dim=8, max_tokens=0).eval()
    rng = np.random.default_rng(0)
    prev, curr = rng.integers(0, 256, size=(2, 2, 48, 80, 3), dtype=np.uint8)
    ref = adapter.encode(prev, curr)
    with torch.no_grad():
        got = tokens.backbone.encode(prev, curr)
        torch.testing.assert_close(got.patches, ref.patches, rtol=0, atol=0)
        torch.testing.assert_close(tokens(prev, curr), tokens.projector(ref.patches), rtol=0, atol=0)
    assert tokens.backbone.contract == adapter.contract and tokens.backbone.contract.resize == "center_crop"
    # the two-frame encoder sees motion; the one-frame encoder ignores prev
    moved = tokens.backbone.encode(curr, curr).patches
    assert torch.equal(moved, ref.patches) == (adapter.contract.frames_needed == 1)


def test_backbone_loads_strictly(sources, tmp_path) -> None:
    """A checkpoint with a missing key fails through the registry's strict loader."""
    sd = load_file(tmp_path / "dinov2" / "model.safetensors")
    del sd["layernorm.weight"]
    save_file(sd, tmp_path / "dinov2" / "model.safetensors")
    with pytest.raises(StrictLoadError, match="layernorm.weight"):
        build_backbone(BackboneConfig(encoder=sources["dinov2_hf"]))


def test_unknown_encoder_lists_the_registry() -> None:
    with pytest.raises(KeyError, match="valid names: .*dinov2_hf.*two_stream"):
        build_backbone(BackboneConfig(encoder={"name": "nope"}))


def test_device_is_the_policys() -> None:
    with pytest.raises(ValueError, match="fine-tuning device"):
        BackboneConfig(encoder={"name": "two_stream", "device": "cuda"})


def test_freeze_flag() -> None:
    bb = build_backbone(BackboneConfig(encoder={"name": "two_stream", "arch": "tiny", "img_size": 32,
                                                "model_kwargs": {"depth": 3}}, freeze=True))
    assert not any(p.requires_grad for p in bb.parameters())


def test_token_budget() -> None:
    assert pooled_grid((16, 16), 64) == (8, 8)
    assert pooled_grid((14, 14), 0) == (14, 14)
    x = torch.arange(16.0).view(1, 16, 1)  # 4 x 4 grid, row-major
    pooled = pool_tokens(x, (4, 4), 4)
    assert pooled.shape == (1, 4, 1)
    assert pooled[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)  # top-left 2 x 2 block
