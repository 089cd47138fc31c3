"""The shared adapter interface: frame checks, numpy/torch inputs, frames='both', resizing."""

from __future__ import annotations

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
    """Any input size comes out at the contract's resolution (the values: test_preprocessing.py)."""
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    enc = build_encoder(EncoderConfig(name="dinov2_hf", img_size=56, model_kwargs=tiny, device="cpu"))
    for h, w in [(100, 150), (56, 56), (40, 30)]:
        assert enc.preprocess(make_frames(1, h, w)).shape == (1, 3, 56, 56)
