"""Our encoders: checkpoints from avbr.models.save_encoder load through the registry unchanged."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from avbr.adapters import EncoderConfig, build_encoder
from avbr.adapters.readouts import build_readout
from avbr.models import build_model, save_encoder

TINY = dict(preset="tiny", img_size=32, depth=3)


@pytest.mark.parametrize("name", ["two_stream", "single_stream", "early_fusion", "m_only", "p_only"])
def test_checkpoint_matches_model(tmp_path, make_frames, name: str) -> None:
    model = build_model(name, **TINY).eval()
    save_encoder(model, tmp_path / name)
    enc = build_encoder(EncoderConfig(name=name, source=str(tmp_path / name), device="cpu"))
    prev, curr = make_frames(2, 48, 40, seed=1), make_frames(2, 48, 40, seed=2)
    feats = enc.encode(prev, curr)
    p, c = enc.preprocess(prev), enc.preprocess(curr)
    assert p.shape == (2, 3, 32, 32) and 0.0 <= float(p.min()) and float(p.max()) <= 1.0
    with torch.no_grad():
        out = model(p if model.frames_needed == 2 else None, c)
    torch.testing.assert_close(feats.cls, out.cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats.patches, out.patches, atol=1e-5, rtol=0)
    assert feats.stream_cls.keys() == out.stream_cls.keys()


def test_two_stream_aggregations_use_streams(make_frames) -> None:
    enc = build_encoder(EncoderConfig(name="two_stream", arch="tiny", img_size=32, model_kwargs=dict(depth=3), device="cpu"))
    x = make_frames(2, 32, 32)
    f = enc.encode(x, x)
    d = enc.embed_dim
    assert build_readout("agg_a", f)(f).shape == (2, 4 * d)
    assert build_readout("agg_d", f)(f).shape == (2, 2 * (1 + 4), d)
    assert build_readout("pixelwise", f)(f).shape == (2, 1 + 4, d)


def test_wrong_entry_and_strict_keys(tmp_path) -> None:
    save_encoder(build_model("m_only", **TINY), tmp_path / "m")
    with pytest.raises(ValueError, match="encoder=m_only"):
        build_encoder(EncoderConfig(name="p_only", source=str(tmp_path / "m"), device="cpu"))
    sd = load_file(tmp_path / "m" / "encoder.safetensors")
    key = sorted(sd)[0]
    del sd[key]
    save_file(sd, tmp_path / "m" / "encoder.safetensors")
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        build_encoder(EncoderConfig(name="m_only", source=str(tmp_path / "m"), device="cpu"))


def test_p_only_frames_both(make_frames) -> None:
    enc = build_encoder(EncoderConfig(name="p_only", arch="tiny", img_size=32, model_kwargs=dict(depth=3), frames="both", device="cpu"))
    x = make_frames(2, 32, 32)
    assert enc.encode(x, x).cls.shape == (2, 2 * enc.embed_dim)
