"""Behaviour tests of the two-stream encoder, fusion and decoder."""

import pytest
import torch

from avbr.models import ENCODER_NAMES, build_model, list_models
from avbr.models.fusion import CLS_FUSIONS, PIXEL_FUSIONS, build_cls_fusion, build_pixel_fusion

TINY = dict(preset="tiny", img_size=32, patch_size=8, depth=3)


def _pair(batch: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 3, size, size, generator=g)


@pytest.mark.parametrize("mode, p_changes", [("interleaved", True), ("separate", False)])
def test_m_input_reaches_p_cls_only_when_interleaved(mode, p_changes):
    torch.manual_seed(0)
    enc = build_model("two_stream", mode=mode, **TINY).eval()
    prev, curr = _pair()
    # Changing prev alone changes M and leaves P (computed from curr) untouched.
    other_prev = torch.rand_like(prev)
    with torch.no_grad():
        a, b = enc(prev, curr), enc(other_prev, curr)
    assert not torch.allclose(a.stream_cls["m"], b.stream_cls["m"])
    changed = not torch.equal(a.stream_cls["p"], b.stream_cls["p"])
    assert changed == p_changes
    assert torch.equal(a.stage_cls[-1], a.stream_cls["p"])


@pytest.mark.parametrize("kind", PIXEL_FUSIONS.names())
def test_pixelwise_fusion_keeps_locality(kind):
    torch.manual_seed(0)
    fusion = build_pixel_fusion(kind, 16)
    m, p = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    base = fusion(m, p)
    for stream in ("m", "p"):
        m2, p2 = m.clone(), p.clone()
        (m2 if stream == "m" else p2)[:, 4] += 1.0
        diff = (fusion(m2, p2) - base).abs().sum(dim=(0, 2))  # [N]
        assert diff[4] > 0
        assert torch.count_nonzero(diff[torch.arange(9) != 4]) == 0


@pytest.mark.parametrize("mode", ["interleaved", "separate"])
def test_gradients_reach_both_streams(mode):
    enc = build_model("two_stream", mode=mode, **TINY)
    out = enc(*_pair())
    (out.cls.square().mean() + out.patches.square().mean()).backward()
    for vit in (enc.m_vit, enc.p_vit):
        assert vit.patch_embed.proj.weight.grad.abs().sum() > 0
        assert vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_every_encoder_shapes_and_backward(name):
    enc = build_model(name, **TINY)
    prev, curr = _pair()
    out = enc(prev, curr)
    n = (32 // 8) ** 2
    assert out.cls.shape == (2, enc.embed_dim)
    assert out.patches.shape == (2, n, enc.embed_dim)
    assert out.grid == (4, 4) and len(out.stage_cls) == 3
    out.patches.sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    still = enc(None, curr)
    assert still.cls.shape == (2, enc.embed_dim)


@pytest.mark.parametrize("img_size", [128, 224])
def test_decoder_output_matches_input_size(img_size):
    model = build_model("video_predictor", encoder_kwargs=dict(preset="tiny", img_size=img_size, depth=3))
    prev, curr = _pair(1, img_size)
    pred, out = model(prev, curr)
    assert pred.shape == (1, 3, img_size, img_size)
    assert 0 <= pred.min() and pred.max() <= 1
    pred.mean().backward()
    assert model.encoder.m_vit.patch_embed.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("inputs", ["A", "B", "C", "D"])
def test_decoder_input_ablations(inputs):
    model = build_model("video_predictor", encoder_kwargs=TINY, decoder_kwargs=dict(inputs=inputs, width=32))
    pred, _ = model(*_pair())
    assert pred.shape == (2, 3, 32, 32)
    assert len(model.decoder.films) == (0 if inputs in "AB" else 2)


def test_decoder_intermediate_cls_changes_output():
    torch.manual_seed(0)
    model = build_model("video_predictor", encoder_kwargs=TINY, decoder_kwargs=dict(width=32)).eval()
    for film in model.decoder.films:  # FiLM starts as identity; give it weights
        torch.nn.init.normal_(film.proj.weight, std=0.5)
    prev, curr = _pair()
    out = model.encoder(prev, curr)
    base = model.decoder(out.patches, out.grid, prev, out.stage_cls)
    # 8-px patches give 3 levels: the final CLS feeds level 1, the stage-2 CLS level 2.
    moved = [out.stage_cls[0], out.stage_cls[1] + 1.0, out.stage_cls[2]]
    assert not torch.allclose(base, model.decoder(out.patches, out.grid, prev, moved))
    unused = [out.stage_cls[0] + 1.0, *out.stage_cls[1:]]
    assert torch.equal(base, model.decoder(out.patches, out.grid, prev, unused))


@pytest.mark.parametrize("kind", CLS_FUSIONS.names())
def test_cls_fusions(kind):
    enc = build_model("two_stream", cls_fusion=kind, **TINY)
    out = enc(*_pair())
    assert out.cls.shape == (2, 192)
    out.cls.sum().backward()


def test_shared_pixel_fusion_fuses_cls_with_the_same_map():
    enc = build_model("two_stream", pixel_fusion="shared", **TINY).eval()
    out = enc(*_pair())
    assert enc.cls_fusion is None
    assert torch.allclose(out.cls, enc.pixel_fusion(out.stream_cls["m"], out.stream_cls["p"]))
    with pytest.raises(ValueError, match="cls_fusion='linear'"):
        build_model("two_stream", pixel_fusion="shared", cls_fusion="gating", **TINY)


def test_registry_errors_list_valid_names():
    with pytest.raises(KeyError, match="two_stream"):
        build_model("two_stram")
    with pytest.raises(TypeError, match="pixel_fusion"):
        build_model("two_stream", pixel_fusoin="mlp")
    with pytest.raises(ValueError, match="tiny"):
        build_model("two_stream", preset="huge")
    with pytest.raises(KeyError, match="gating"):
        build_cls_fusion("concat", 8)
    assert set(ENCODER_NAMES) | {"video_predictor"} == set(list_models())
