"""Rollout videos through PyAV: every frame comes back (count, size, rate, content); no imageio needed;
a missing encoder or PyAV fails with a message that names it."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avbr.eval.rollouts import videos
from avbr.eval.rollouts.videos import (CODECS, VideoWriterUnavailableError, check_video_writer, video_codec,
                                       write_video)


def clip(t: int, h: int, w: int) -> np.ndarray:
    """``uint8 [t, h, w, 3]``: frame ``i`` is grey ``16 * i`` with a red block at columns ``2 + 2i ..``.

    The block moves by 2 columns: yuv420p stores colour at half resolution, so a colour edge is only
    sharp on even columns.
    """
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = 16 * i
        frames[i, 4:12, 2 + 2 * i:8 + 2 * i] = [255, 0, 0]
    return frames


def decode(path: Path) -> tuple[np.ndarray, Fraction]:
    """``uint8 [T, H, W, 3]`` frames and the stream's average frame rate."""
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]), rate


@pytest.fixture
def codec_cache():
    """Forget the cached codec choice before and after a test that changes what PyAV offers."""
    video_codec.cache_clear()
    yield
    video_codec.cache_clear()


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_keeps_every_frame_the_rate_and_the_content(codec, tmp_path, monkeypatch):
    monkeypatch.setattr(videos, "video_codec", lambda: codec)
    frames = clip(12, 33, 35)  # odd sides: yuv420p needs even ones
    path = write_video(frames, tmp_path / "v" / "ep.mp4", fps=20)
    assert path == tmp_path / "v" / "ep.mp4" and not list(path.parent.glob("*.part.mp4"))

    got, rate = decode(path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == {"libx264": "h264", "mpeg4": "mpeg4"}[codec]
    assert got.shape == (12, 34, 36, 3)  # padded to even by repeating the last row and column
    assert rate == 20
    got = got[:, :33, :35].astype(np.int16)
    err = np.abs(got - frames).mean(axis=(1, 2, 3))
    assert err.max() < 6, err  # lossy, but close (measured: 0.5-2.4 grey levels per frame)
    # each decoded frame is nearest to its own source frame: none dropped, repeated or reordered
    dist = np.abs(got[:, None] - frames[None].astype(np.int16)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(12))
    # the red block is where it was drawn in every frame
    red = (got[:, 8, :, 0] - got[:, 8, :, 1]) > 128  # [T, W]
    assert [int(np.argmax(r)) for r in red] == [2 + 2 * i for i in range(12)]


def test_single_frame_and_bad_input(tmp_path):
    got, _ = decode(write_video(clip(1, 16, 16), tmp_path / "one.mp4", fps=20))
    assert got.shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="uint8"):
        write_video(np.zeros((3, 16, 16, 3), np.float32), tmp_path / "x.mp4", fps=20)
    with pytest.raises(ValueError, match="T>=1"):
        write_video(np.zeros((0, 16, 16, 3), np.uint8), tmp_path / "x.mp4", fps=20)
    with pytest.raises(ValueError, match="fps"):
        write_video(clip(2, 16, 16), tmp_path / "x.mp4", fps=0)


def test_videos_need_no_imageio(tmp_path, monkeypatch):
    # The failure this module replaces: imageio without its ffmpeg plugin wrote ".mp4" as TIFF.
    monkeypatch.setitem(sys.modules, "imageio", None)  # `import imageio` now raises ImportError
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert check_video_writer() in CODECS
    assert decode(write_video(clip(4, 16, 16), tmp_path / "v.mp4", fps=20))[0].shape == (4, 16, 16, 3)


def _without_encoders(monkeypatch, missing: set[str]) -> None:
    real = av.codec.Codec

    def codec(name, mode="r"):
        if name in missing and mode == "w":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", codec)


def test_without_h264_falls_back_to_mpeg4_with_a_warning(codec_cache, monkeypatch, tmp_path):
    _without_encoders(monkeypatch, {"libx264"})
    with pytest.warns(UserWarning, match="no libx264 .* MPEG-4"):
        assert check_video_writer() == "mpeg4"
    got, rate = decode(write_video(clip(5, 16, 16), tmp_path / "v.mp4", fps=10))
    assert got.shape == (5, 16, 16, 3) and rate == 10


def test_no_encoder_fails_naming_the_codecs_and_the_way_out(codec_cache, monkeypatch):
    _without_encoders(monkeypatch, set(CODECS))
    with pytest.raises(VideoWriterUnavailableError, match="none of libx264, mpeg4.*videos_per_task=0"):
        check_video_writer()


def test_missing_pyav_fails_naming_it(codec_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(VideoWriterUnavailableError, match="PyAV, which is not installed: `pip install av`"):
        check_video_writer()
