"""``python -m avbr.data.resize_videos``: a resized copy with the same structure, frame count and
frame order, the hdf5 sidecars copied, readable by the same source."""

from __future__ import annotations

import filecmp

import av
import numpy as np
from pair_fixtures import write_egodex_episode, write_video

from avbr.data import EgoDexSource, VideoFolderSource, read_frames
from avbr.data.resize_videos import main


def grey(img: np.ndarray) -> float:
    """Mean grey level away from the marker (pair_fixtures.frame encodes index i as 20 * i)."""
    return float(img[img.shape[0] // 2 :, img.shape[1] // 2 :].mean())


def test_egodex_copy_is_resized_and_keeps_sidecars(tmp_path) -> None:
    src, dst = tmp_path / "egodex", tmp_path / "small"
    for i in range(2):
        write_egodex_episode(src / "fold_towel", i, n=10, size=64)
    counts = main([str(src), str(dst), "--short-side", "32", "--gop", "4"])
    assert counts == {"videos": 2, "copied": 2, "skipped": 0, "failed": 0}
    for i in range(2):
        assert filecmp.cmp(src / "fold_towel" / f"{i}.hdf5", dst / "fold_towel" / f"{i}.hdf5", shallow=False)
        with av.open(str(dst / "fold_towel" / f"{i}.mp4")) as c:
            s = c.streams.video[0]
            assert (s.codec_context.height, s.codec_context.width, s.frames) == (32, 32, 10)
    frames = read_frames(str(dst / "fold_towel" / "0.mp4"), [7, 0, 3])
    assert [round(grey(f) / 20) for f in frames] == [7, 0, 3]  # frame i is still frame i
    marker = frames[1][:4, :4].reshape(-1, 3).mean(axis=0)
    assert marker[0] > 200 and marker[1] < 60  # the red top-left marker: not flipped
    small = EgoDexSource(str(dst))
    assert len(small) == 2 and small.task(small.episodes()[0]) == "fold the towel"
    assert main([str(src), str(dst), "--short-side", "32"])["skipped"] == 4  # a rerun resumes


def test_aspect_kept_with_even_sides_and_bad_file_reported(tmp_path) -> None:
    src, dst = tmp_path / "videos", tmp_path / "small"
    with av.open(str(src.mkdir() or src / "wide.mp4"), mode="w") as out:
        st = out.add_stream("libx264", rate=30)
        st.width, st.height, st.pix_fmt = 160, 90, "yuv420p"
        for i in range(5):
            for p in st.encode(av.VideoFrame.from_ndarray(np.full((90, 160, 3), 30 * i, np.uint8), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    write_video(src / "sub" / "square.mp4", 6, size=32)
    (src / "sub" / "broken.mp4").write_bytes(b"not a video")
    counts = main([str(src), str(dst), "--short-side", "45"])
    assert counts["videos"] == 2 and counts["failed"] == 1 and not (dst / "sub" / "broken.mp4").exists()
    assert read_frames(str(dst / "wide.mp4"), [4])[0].shape == (44, 80, 3)  # 45 x 80, height made even
    assert read_frames(str(dst / "sub" / "square.mp4"), [5])[0].shape == (32, 32, 3)  # never upscaled
    assert len(VideoFolderSource(str(dst))) == 2
