"""The vision-backbone protocol: our two-stream encoder and a plain timm ViT behind one interface."""

import pytest
import torch
from avbr.adapters.vla.backbone import BackboneConfig, build_backbone, frames_to_float, pool_tokens, pooled_grid


def test_two_stream_and_timm_backbones() -> None:
    ours = build_backbone(BackboneConfig(source="avbr", model="two_stream", kwargs={"preset": "tiny", "depth": 3}, img_size=32))
    vit = build_backbone(BackboneConfig(source="timm", model="vit_tiny_patch16_224", kwargs={"depth": 1}, img_size=32))
    assert ours.frames_needed == 2 and vit.frames_needed == 1
    prev, curr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    for bb in (ours, vit):
        patches, grid = bb(prev, curr)
        assert patches.shape == (2, grid[0] * grid[1], bb.out_dim) and grid == (2, 2)
    # the two-stream encoder sees motion: a different prev changes its tokens, not the timm ViT's
    assert not torch.allclose(ours(prev, curr)[0], ours(curr, curr)[0])
    assert torch.allclose(vit(prev, curr)[0], vit(curr, curr)[0])


def test_unknown_source_lists_known() -> None:
    with pytest.raises(KeyError, match="known: \\['avbr', 'timm'\\]"):
        build_backbone(BackboneConfig(source="nope"))


def test_freeze_flag() -> None:
    bb = build_backbone(BackboneConfig(kwargs={"preset": "tiny", "depth": 3}, img_size=32, freeze=True))
    assert not any(p.requires_grad for p in bb.parameters())


def test_token_budget() -> None:
    assert pooled_grid((16, 16), 64) == (8, 8)
    assert pooled_grid((14, 14), 0) == (14, 14)
    x = torch.arange(16.0).view(1, 16, 1)  # 4 x 4 grid, row-major
    pooled = pool_tokens(x, (4, 4), 4)
    assert pooled.shape == (1, 4, 1)
    assert pooled[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)  # top-left 2 x 2 block


def test_frames_to_float_layout() -> None:
    u8 = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    u8[0, :, :, 0] = 255
    f = frames_to_float(u8, 8)
    assert f.shape == (1, 3, 8, 8) and f[0, 0].min() == 1.0 and f[0, 1:].max() == 0.0
    with pytest.raises(ValueError, match="uint8 frames"):
        frames_to_float(torch.zeros(1, 3, 8, 8), 8)
