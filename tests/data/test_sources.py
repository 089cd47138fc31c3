"""Every source reads its official layout; the sample dict is the documented one."""

from __future__ import annotations

import numpy as np
import pytest
from pair_fixtures import write_bridge_traj, write_egodex_episode, write_images, write_libero, write_video

from avbr.data import (
    SOURCES,
    BridgeSource,
    CorruptFileError,
    EgoDexSource,
    GapSchedule,
    HDF5DemoSource,
    ImageFolderSource,
    ProceduralVideoSource,
    VideoFolderSource,
    build_source,
    read_frames,
)

REQUIRED = {"prev", "curr", "gap", "is_still", "t", "episode", "task", "source"}


def grey(img: np.ndarray) -> float:
    """Mean grey level away from the marker (encodes the frame index as 20 * i)."""
    return float(img[img.shape[0] // 2 :, img.shape[1] // 2 :].mean())


def check_pair(s: dict, gap: GapSchedule) -> None:
    assert REQUIRED <= set(s)
    for key in ("prev", "curr"):
        assert s[key].dtype == np.uint8 and s[key].ndim == 3 and s[key].shape[2] == 3
    if s["is_still"]:
        assert s["gap"] == 0 and np.array_equal(s["prev"], s["curr"])
    else:
        assert 1 <= s["gap"] <= gap.max_gap


def test_registry_lists_every_format() -> None:
    assert set(SOURCES.names()) >= {"hdf5_demos", "bridge", "egodex", "video_folder", "image_folder", "procedural"}
    with pytest.raises(KeyError, match="valid names"):
        build_source("egodx", "/tmp")


def test_missing_root_names_the_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoFolderSource(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no video files"):
        VideoFolderSource(str(tmp_path))


def test_libero_hdf5_frames_actions_task_and_flip(tmp_path) -> None:
    write_libero(tmp_path / "put_the_bowl_demo.hdf5")
    gap = GapSchedule(max_gap=3)
    src = HDF5DemoSource(str(tmp_path), gap)
    assert len(src.episodes()) == 2
    for seed in range(5):
        s = src.sample(np.random.default_rng(seed))
        check_pair(s, gap)
        t, k = s["t"], s["gap"]
        assert grey(s["prev"]) == 20 * t and grey(s["curr"]) == 20 * (t + k)
        assert tuple(s["prev"][0, 0]) == (255, 0, 0)  # upright after the 180-degree flip
        demo = int(s["episode"].rsplit("demo_", 1)[1])
        assert s["action"][0] == 7 * t + 1000 * demo and s["actions"].shape == (k, 7)
        assert s["task"] == "put the bowl on the plate"


def test_bridge_raw_layout(tmp_path) -> None:
    write_bridge_traj(tmp_path / "2022-05-01_10-00-00" / "raw" / "traj_group0" / "traj0")
    write_bridge_traj(tmp_path / "2022-05-01_10-00-00" / "raw" / "traj_group0" / "traj1")
    gap = GapSchedule(max_gap=2)
    src = BridgeSource(str(tmp_path), gap)
    assert len(src) == 2
    s = src.sample(np.random.default_rng(0))
    check_pair(s, gap)
    assert abs(grey(s["prev"]) - 20 * s["t"]) < 2 and abs(grey(s["curr"]) - 20 * (s["t"] + s["gap"])) < 2
    assert s["action"].tolist() == [float(s["t"])] * 7
    assert s["state"].tolist() == [100.0 + s["t"]] * 7 and s["task"] == "open the drawer"


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9")])
def test_video_folder_decodes_the_right_frames(tmp_path, suffix, codec) -> None:
    path = write_video(tmp_path / "task_a" / f"clip{suffix}", 12, codec=codec)
    assert [round(grey(f) / 20) for f in read_frames(str(path), [9, 2, 5])] == [9, 2, 5]
    gap = GapSchedule(max_gap=4)
    src = VideoFolderSource(str(tmp_path), gap)
    s = src.sample(np.random.default_rng(3))
    check_pair(s, gap)
    assert round(grey(s["prev"]) / 20) == s["t"] and round(grey(s["curr"]) / 20) == s["t"] + s["gap"]
    assert s["task"] == "task_a"


def test_egodex_pairs_and_description(tmp_path) -> None:
    write_egodex_episode(tmp_path / "fold_towel", 0)
    (tmp_path / "fold_towel" / "orphan.mp4").write_bytes(b"")  # no hdf5 beside it: not an episode
    src = EgoDexSource(str(tmp_path), GapSchedule(max_gap=3))
    assert len(src) == 1
    s = src.sample(np.random.default_rng(1))
    assert round(grey(s["curr"]) / 20) == s["t"] + s["gap"] and s["task"] == "fold the towel"


def test_image_folder_gives_stills(tmp_path) -> None:
    src = ImageFolderSource(str(write_images(tmp_path)))
    s = src.sample(np.random.default_rng(0))
    check_pair(s, src.gap)
    assert s["is_still"] and s["prev"] is s["curr"] and s["task"] == "cls_a"


def test_procedural_motion_is_known() -> None:
    src = ProceduralVideoSource(num_episodes=3, episode_length=20, size=48)
    s = src.sample(np.random.default_rng(0))
    check_pair(s, src.gap)
    scene = src.scene(src.episodes()[int(s["episode"])])
    moved = scene.positions(s["t"]) + s["actions"].reshape(s["gap"], -1, 2)[:, : scene.n].sum(0)
    np.testing.assert_allclose(moved, scene.positions(s["t"] + s["gap"]), atol=1e-9)
    assert np.array_equal(s["curr"], scene.render(s["t"] + s["gap"]))


def test_unreadable_files_raise_corrupt_file_error(tmp_path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\x00not a video" * 50)
    with pytest.raises(CorruptFileError, match="bad.mp4"):
        read_frames(str(tmp_path / "bad.mp4"), [0])
