"""Readouts: shapes of every name, A-D on two streams, and clear rejections."""

from __future__ import annotations

import pytest
import torch

from avbr.adapters import Features
from avbr.adapters.readouts import build_readout, list_readouts

B, N, D = 3, 4, 8


def two_stream(fused: bool = True) -> Features:
    g = torch.Generator().manual_seed(0)
    m_cls, p_cls = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    m_pat, p_pat = torch.randn(B, N, D, generator=g), torch.randn(B, N, D, generator=g)
    return Features(cls=m_cls + p_cls, patches=m_pat + p_pat, grid=(2, 2), stream_cls={"m": m_cls, "p": p_cls},
                    stream_patches={"m": m_pat, "p": p_pat}, pixelwise_fused=fused)


def one_stream() -> Features:
    return Features(cls=torch.randn(B, D), patches=torch.randn(B, N, D), grid=(2, 2))


@pytest.mark.parametrize(
    "name, shape",
    [("cls", (B, D)), ("mean", (B, D)), ("patches", (B, D)), ("pixelwise", (B, 1 + N, D)), ("agg_a", (B, 4 * D)),
     ("agg_b", (B, D)), ("agg_c", (B, 1 + N, D)), ("agg_d", (B, 2 * (1 + N), D))],
)
def test_shapes_on_two_stream(name: str, shape: tuple) -> None:
    f = two_stream()
    r = build_readout(name, f)
    out = r(f)
    assert out.shape == shape and r.out_dim == shape[-1] and r.kind == ("tokens" if len(shape) == 3 else "vector")


def test_agg_a_is_late_concat_of_cls_and_mean() -> None:
    f = two_stream()
    out = build_readout("agg_a", f)(f)
    expected = torch.cat([f.stream_cls["m"], f.stream_patches["m"].mean(1), f.stream_cls["p"], f.stream_patches["p"].mean(1)], -1)
    torch.testing.assert_close(out, expected)


def test_agg_c_uses_the_encoders_own_fusion_when_it_has_one() -> None:
    f = two_stream(fused=True)
    torch.testing.assert_close(build_readout("agg_c", f)(f), torch.cat([f.cls[:, None], f.patches], 1))
    g = two_stream(fused=False)  # e.g. frames=both streams: learned per-location fusion
    r = build_readout("agg_c", g)
    assert r.learned and r(g).shape == (B, 1 + N, D)


def test_patches_readout_is_trainable() -> None:
    f = one_stream()
    r = build_readout("patches", f)
    r(f).sum().backward()
    assert r.pool.query.grad is not None and r.pool.query.grad.abs().sum() > 0


def test_rejections_name_the_fix() -> None:
    f = one_stream()
    with pytest.raises(ValueError, match="frames=both"):
        build_readout("pixelwise", f)
    with pytest.raises(ValueError, match="two or more streams"):
        build_readout("agg_a", f)
    with pytest.raises(KeyError, match="agg_a"):
        build_readout("avg", f)
    assert list_readouts() == sorted(["cls", "mean", "patches", "pixelwise", "agg_a", "agg_b", "agg_c", "agg_d"])
