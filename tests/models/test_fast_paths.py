"""The speed rewrites of issue "Performance" compute the old math: the bilinear x2 upsampling as
shifted copies against ``F.interpolate``, the patch embedding as reshape + matmul against timm's
``PatchEmbed`` convolution, and a whole video predictor against one that uses the old operators."""

import pytest
import torch
import torch.nn.functional as F

from avbr.models import build_model
from avbr.models import decoder as decoder_module
from avbr.models.decoder import upsample2x_bilinear
from avbr.models.vit import StreamViT


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 8, 14, 14), (3, 5, 1, 4), (2, 4, 6, 9)])
def test_upsample_matches_interpolate_values_and_gradients(shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = upsample2x_bilinear(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    (gx_ref,) = torch.autograd.grad(ref, x, g)
    (gx,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("in_chans, patch", [(4, 16), (5, 8), (9, 14)])
def test_patchify_matches_the_timm_convolution(in_chans, patch):
    vit = StreamViT(in_chans=in_chans, img_size=4 * patch, patch_size=patch, embed_dim=32, depth=1,
                    num_heads=2, mlp_ratio=2.0).double()
    x = torch.randn(2, in_chans, 4 * patch, 4 * patch, dtype=torch.float64)
    torch.testing.assert_close(vit.patchify(x), vit.patch_embed(x), rtol=0, atol=1e-12)
    x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(vit.patchify(x), vit.patch_embed(x), rtol=0, atol=1e-12)


def test_video_predictor_equals_the_old_operators_in_bf16(monkeypatch):
    """Whole forward in bf16 autocast (the training precision) against the same weights run
    through the old operators (timm's conv patch embedding, ``F.interpolate``)."""
    torch.manual_seed(0)
    model = build_model("video_predictor", encoder_kwargs=dict(preset="tiny", img_size=64, patch_size=8, depth=3)).eval()
    img_t, img_tk = torch.rand(2, 2, 3, 64, 64).unbind(0)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        new, _ = model(img_t, img_tk)
        monkeypatch.setattr(StreamViT, "patchify", lambda self, x: self.patch_embed(x))
        monkeypatch.setattr(decoder_module, "upsample2x_bilinear",
                            lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        old, _ = model(img_t, img_tk)
    assert not torch.equal(new, torch.zeros_like(new))
    torch.testing.assert_close(new.float(), old.float(), rtol=0, atol=2e-2)  # bf16 has 8 mantissa bits
