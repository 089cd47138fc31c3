"""Known-answer tests of the M/P channels on hand-made frames."""

import pytest
import torch

from avbr.preprocess import LUMA_WEIGHTS, luminance, m_channels, mp_channels, p_channels


def _frame(size: int = 32) -> torch.Tensor:
    return torch.zeros(1, 3, size, size)


def test_moving_square_gives_delta_l_only_where_it_left_and_arrived():
    prev, curr = _frame(), _frame()
    prev[..., 8:12, 8:12] = 1.0  # white square, columns 8-11
    curr[..., 8:12, 10:14] = 1.0  # moved two pixels right: columns 10-13
    m = m_channels(prev, curr)
    assert m.shape == (1, 4, 32, 32)
    left = torch.zeros(32, 32, dtype=torch.bool)
    left[8:12, 8:10] = True
    arrived = torch.zeros(32, 32, dtype=torch.bool)
    arrived[8:12, 12:14] = True
    for c in range(4):  # ΔL, ΔR, ΔG, ΔB are all ±1 for a white square on black
        ch = m[0, c]
        assert torch.allclose(ch[left], torch.tensor(-1.0), atol=1e-6)
        assert torch.allclose(ch[arrived], torch.tensor(1.0), atol=1e-6)
        assert torch.count_nonzero(ch[~(left | arrived)]) == 0


def test_coloured_motion_gives_luma_weighted_delta_l():
    prev, curr = _frame(8), _frame(8)
    curr[:, 0, 2, 2] = 1.0  # a red pixel appears
    m = m_channels(prev, curr)
    assert m[0, 0, 2, 2] == pytest.approx(LUMA_WEIGHTS[0])
    assert m[0, 1, 2, 2] == pytest.approx(1.0)
    assert m[0, 2, 2, 2] == 0 and m[0, 3, 2, 2] == 0


def test_vertical_edge_gives_dx_at_the_edge_and_no_dy():
    frame = _frame()
    frame[..., :, 16:] = 1.0  # dark left half, bright right half
    p = p_channels(frame)
    assert p.shape == (1, 5, 32, 32)
    dx, dy = p[0, 0], p[0, 1]
    assert torch.count_nonzero(dy) == 0
    assert torch.allclose(dx[:, 15:17], torch.full((32, 2), 0.5))
    assert torch.count_nonzero(dx[:, :15]) == 0 and torch.count_nonzero(dx[:, 17:]) == 0
    assert torch.equal(p[0, 2:], frame[0])


def test_horizontal_edge_gives_dy_and_no_dx():
    frame = _frame()
    frame[..., 16:, :] = 1.0
    p = p_channels(frame)
    assert torch.count_nonzero(p[0, 0]) == 0
    assert torch.allclose(p[0, 1, 15:17, :], torch.full((2, 32), 0.5))


def test_still_image_gives_zero_m():
    frame = torch.rand(3, 3, 16, 16)
    assert torch.count_nonzero(m_channels(None, frame)) == 0
    assert torch.count_nonzero(m_channels(frame, frame)) == 0
    m, p = mp_channels(None, frame, p_frame="prev")
    assert torch.count_nonzero(m) == 0 and torch.equal(p, p_channels(frame))


def test_p_frame_selects_the_source_frame():
    prev, curr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert torch.equal(mp_channels(prev, curr)[1], p_channels(curr))
    assert torch.equal(mp_channels(prev, curr, p_frame="prev")[1], p_channels(prev))
    with pytest.raises(ValueError, match="p_frame"):
        mp_channels(prev, curr, p_frame="next")


def test_uint8_frames_are_scaled_and_batched_per_sample():
    frames = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    p = p_channels(frames)
    assert torch.allclose(p[:, 2:], frames.float() / 255)
    assert torch.allclose(luminance(frames.float() / 255)[1], luminance(frames[1:2].float() / 255)[0])


def test_bad_shapes_name_the_fix():
    with pytest.raises(ValueError, match="permute"):
        p_channels(torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match="same shape"):
        m_channels(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_gpu():
    frame = torch.rand(2, 3, 16, 16, device="cuda")
    m, p = mp_channels(frame, frame)
    assert m.device.type == "cuda" and p.device.type == "cuda"
