"""Shared fixtures of the adapter tests: random uint8 frames and tiny model sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_offline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deterministic weights and no hub traffic even if a test forgets a local path (one intra-op
    thread comes from ``tests/conftest.py``). Applies to the encoder-adapter tests of this folder
    only, not to ``vla/``."""
    import huggingface_hub.constants

    if request.path.parent != Path(__file__).parent:
        yield
        return
    torch.manual_seed(0)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield


@pytest.fixture
def make_frames() -> Callable[..., np.ndarray]:
    """``make_frames(b, h, w, seed=0)`` -> random uint8 RGB frames ``[b, h, w, 3]``."""

    def make(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)

    return make


@pytest.fixture
def tiny_hf() -> dict:
    """1 layer, width 32: transformers configs build and run in well under a second."""
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


@pytest.fixture
def tiny_timm() -> dict:
    """timm ViT kwargs of the same tiny size."""
    return dict(embed_dim=32, depth=1, num_heads=2)
