"""OpenVLA action tokenizer: bins, id range, round trip."""

import numpy as np
import pytest
import torch
from avbr.adapters.vla.action_tokenizer import ActionTokenizer


def test_round_trip_within_one_bin() -> None:
    at = ActionTokenizer(vocab_size=32000)
    a = torch.cat([torch.rand(5000, 7) * 2 - 1, torch.tensor([[-1.0] * 7, [1.0] * 7, [0.0] * 7])])
    err = (at.decode(at.encode(a)) - a).abs()
    assert err.max() <= at.bin_width + 1e-6
    assert at.bin_width == pytest.approx(2 / 255)


def test_ids_counted_back_from_the_end_like_numpy_digitize() -> None:
    """id = vocab_size - digitize(a, linspace(-1, 1, 256)) (openvla action_tokenizer.py)."""
    at = ActionTokenizer(vocab_size=32000)
    a = np.random.default_rng(0).uniform(-1.2, 1.2, size=(100, 7))
    expect = 32000 - np.digitize(np.clip(a, -1, 1), np.linspace(-1, 1, 256))
    ids = at.encode(torch.from_numpy(a))
    assert torch.equal(ids, torch.from_numpy(expect).long())
    assert ids.min() >= 32000 - 256 and ids.max() <= 31999
    assert at.encode(torch.tensor([1.0])).item() == 32000 - 256  # a == 1 -> digitize 256
    assert at.encode(torch.tensor([-1.0])).item() == 31999


def test_decode_clips_non_action_ids_and_orders_bins() -> None:
    at = ActionTokenizer(vocab_size=1000)
    assert at.decode(torch.tensor([0])).item() == pytest.approx(at.centers[-1].item())
    ids = at.encode(torch.linspace(-1, 1, 50))
    assert torch.all(ids[1:] <= ids[:-1])  # larger action -> smaller id


def test_small_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="must exceed n_bins"):
        ActionTokenizer(vocab_size=200)
