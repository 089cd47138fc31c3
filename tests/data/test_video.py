"""VideoReader: decode-time scaling matches full decode + resize; the open-file cache changes no
pixels; the mixture draws the same pairs with scaling on (the documented draw order, replayed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pair_fixtures import write_video

from avbr.data import GapSchedule, PairMixture, VideoFolderSource, VideoReader, read_frames, resize_center_crop
from avbr.data.base import short_side_shape


def write_textured(path: Path, n: int = 24, h: int = 180, w: int = 320, gop: int = 8) -> Path:
    """A 16:9 H.264 clip of a smooth, textured scene panned by 4 px a frame (real detail for the scaler)."""
    rng = np.random.default_rng(0)
    scene = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 40, 3), dtype=np.uint8)).resize((2 * w, h), Image.BICUBIC))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "g": str(gop)}
        for i in range(n):
            img = np.ascontiguousarray(scene[:, 4 * i : 4 * i + w])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_short_side_shape_keeps_aspect() -> None:
    assert short_side_shape(1080, 1920, 224) == (224, 398)  # 1920 * 224 / 1080 = 398.2
    assert short_side_shape(1920, 1080, 256) == (455, 256)
    assert short_side_shape(480, 640, 224) == (224, 299)  # 298.67 rounds up


@pytest.mark.parametrize("size", [64, 96])
def test_reduced_decode_matches_full_decode_and_resize(tmp_path, size: int) -> None:
    path = str(write_textured(tmp_path / "clip.mp4"))
    idx = [3, 10, 17, 23]
    full = VideoReader().read(path, idx)
    small = VideoReader().read(path, idx, short_side=size)
    for f, s in zip(full, small):
        assert f.shape == (180, 320, 3) and s.shape == (*short_side_shape(180, 320, size), 3)
        d = diff(resize_center_crop(f, size), resize_center_crop(s, size))
        # Scaling in YUV before the RGB conversion clips saturated colours differently: ~2.5 levels
        # mean on this saturated random palette, 1.3 on the 1080p benchmark scene.
        assert d.mean() < 3 and np.percentile(d, 99) <= 12, (d.mean(), np.percentile(d, 99))
    # Frames are the right ones, not neighbours: a 4 px pan a frame moves every pixel.
    neighbour = resize_center_crop(VideoReader().read(path, [11])[0], size)
    assert diff(resize_center_crop(small[1], size), neighbour).mean() > 4 * diff(
        resize_center_crop(small[1], size), resize_center_crop(full[1], size)).mean()


def test_no_upscaling_at_decode(tmp_path) -> None:
    path = str(write_textured(tmp_path / "clip.mp4"))
    assert VideoReader().read(path, [2], short_side=400)[0].shape == (180, 320, 3)


def test_cache_is_bounded_and_gives_the_one_off_pixels(tmp_path) -> None:
    paths = [str(write_video(tmp_path / f"{i}.mp4", 12, size=32)) for i in range(3)]
    reader = VideoReader(max_open=2)
    rng = np.random.default_rng(0)
    for _ in range(12):
        p = paths[int(rng.integers(3))]
        t = int(rng.integers(8))
        got = reader.read(p, [t + 3, t])
        want = read_frames(p, [t + 3, t])
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        assert len(reader._open) <= 2 and p in reader._open
    assert reader.num_frames(paths[0]) == 12
    clone = pickle.loads(pickle.dumps(reader))  # what a spawned DataLoader worker gets
    assert not clone._open and clone.max_open == 2
    reader.close()
    assert not reader._open


def test_mixture_draws_the_documented_pairs_with_decode_scaling(tmp_path) -> None:
    for i in range(3):
        write_textured(tmp_path / "clips" / f"{i}.mp4", n=16 + 4 * i)
    gap = GapSchedule()
    src = VideoFolderSource(str(tmp_path / "clips"), gap=gap)
    mix = PairMixture([src], [1.0], img_size=64, still_ratio=0.0, seed=7)
    assert src.decode_short_side == 64
    for g in range(6):
        # The draw order of PairMixture / FramePairSource.sample, replayed from their docstrings.
        rng = np.random.default_rng([7, g])
        rng.choice(1, p=[1.0])
        unit = src.units[int(rng.integers(3))]
        length = 16 + 4 * int(Path(unit).stem)
        k = gap.sample(rng, max_gap=length - 1)
        t = int(rng.integers(length - k))
        s = mix[g]
        assert (s["episode"], s["t"], s["gap"]) == (Path(unit).name, t, k)
        prev, curr = read_frames(unit, [t, t + k])  # full resolution, then the mixture's resize
        assert s["prev"].shape == (64, 64, 3)
        assert diff(s["prev"], resize_center_crop(prev, 64)).mean() < 3
        assert diff(s["curr"], resize_center_crop(curr, 64)).mean() < 3


def test_a_forked_worker_does_not_reuse_the_parents_open_files(tmp_path, monkeypatch) -> None:
    path = str(write_video(tmp_path / "a.mp4", 8, size=32))
    reader = VideoReader()
    reader.read(path, [2])
    parents = reader._open[path]
    monkeypatch.setattr("avbr.data.video.os.getpid", lambda: -1)  # as seen from a forked child
    assert np.array_equal(reader.read(path, [5])[0], read_frames(path, [5])[0])
    assert reader._open[path] is not parents and len(reader._open) == 1


@pytest.mark.parametrize("threads", [1, 0])
def test_reads_equal_a_plain_decode_of_every_frame(tmp_path, threads: int) -> None:
    """Skipping non-reference frames (x264 B-frames here) changes no pixel of the frames asked for."""
    path = str(write_textured(tmp_path / "clip.mp4", n=40, gop=20))
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.has_b_frames  # the skip has something to skip
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    reader = VideoReader(threads=threads)
    for t, k in [(0, 1), (5, 10), (19, 1), (20, 3), (27, 9), (37, 2), (39 - 10, 10)]:
        prev, curr = reader.read(path, [t, t + k])
        assert np.array_equal(prev, every[t]) and np.array_equal(curr, every[t + k]), (t, k)
