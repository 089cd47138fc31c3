"""Feature cache: hits on identical inputs, misses when weights, data, contract or readout change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbr.adapters import EncoderConfig, build_encoder
from avbr.adapters.cache import FeatureCache, extract_features, files_hash, tensors_to_features

TINY = dict(embed_dim=32, depth=1, num_heads=2)


@pytest.fixture
def enc():
    return build_encoder(EncoderConfig(name="timm_vit", img_size=32, model_kwargs=TINY, device="cpu"))


def test_hit_and_invalidation(tmp_path, enc, make_frames, monkeypatch) -> None:
    cache = FeatureCache(tmp_path / "cache")
    x = make_frames(5, 32, 32)
    t1, _ = extract_features(enc, x, batch_size=2, cache=cache, progress=False)
    assert len(list(cache.root.iterdir())) == 1 and t1["cls"].shape == (5, 32)

    def no_forward(*args):
        raise AssertionError("a cache hit must not run the encoder")

    monkeypatch.setattr(enc, "forward_pixels", no_forward)
    t2, _ = extract_features(enc, x, batch_size=2, cache=cache, progress=False)  # a hit: no forward
    torch.testing.assert_close(t1["cls"], t2["cls"])
    monkeypatch.undo()

    with torch.no_grad():
        enc.model.blocks[0].mlp.fc1.bias.add_(1e-3)  # weights change -> new entry
    t3, _ = extract_features(enc, x, batch_size=2, cache=cache, progress=False)
    assert len(list(cache.root.iterdir())) == 2 and not torch.allclose(t1["cls"], t3["cls"])

    y = x.copy()
    y[0, 0, 0, 0] ^= 1  # one bit of data -> new entry
    extract_features(enc, y, batch_size=2, cache=cache, progress=False)
    extract_features(enc, x, batch_size=2, cache=cache, progress=False, readout="mean")  # readout -> new entry
    assert len(list(cache.root.iterdir())) == 4


def test_raw_features_round_trip(tmp_path, enc, make_frames) -> None:
    x = make_frames(3, 32, 32)
    t, meta = extract_features(enc, x, batch_size=2, progress=False)
    f = tensors_to_features(t, meta)
    torch.testing.assert_close(f.patches, enc.encode(None, x).patches)


def test_learned_readout_is_not_cached(enc, make_frames) -> None:
    with pytest.raises(ValueError, match="learned parameters"):
        extract_features(enc, make_frames(2, 32, 32), readout="patches", progress=False)


def test_files_hash_sees_rewrites(tmp_path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.zeros(3))
    h = files_hash([p])
    np.save(p, np.zeros(4))
    assert files_hash([p]) != h
