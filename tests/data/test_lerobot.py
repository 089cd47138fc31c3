"""LeRobotSource on fixtures in LeRobot's exact v2.0 / v2.1 / v3.0 layouts (tests/data/lerobot_fixtures.py)."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from lerobot_fixtures import (CAMERA_ID, EPISODE_TASK, LENGTHS, OPENPI_KEYS, TASKS, action, decode, state,
                              write_v21, write_v30)

from avbr.data import SOURCES, build_source
from avbr.data.lerobot import FrameTimestampError, LeRobotSource
from avbr.eval.probing.action_data import load_pairs


def _has_av1() -> bool:
    try:
        av.codec.Codec("libsvtav1", "w")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
        return False
    return any(_decoder(n) for n in ("libdav1d", "libaom-av1", "av1"))


def _decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
        return True
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
        return False


LAYOUTS = [
    pytest.param("v2.1", "libx264", id="v2.1-h264"),
    pytest.param("v3.0", "libx264", id="v3.0-h264"),
    pytest.param("v3.0", "libsvtav1", id="v3.0-av1", marks=pytest.mark.skipif(
        not _has_av1(), reason="this FFmpeg has no AV1 encoder (libsvtav1) and decoder (libdav1d/libaom-av1)")),
]


def _check_every_pair(src: LeRobotSource, camera: str, k: int, upright: bool = True) -> int:
    """Every pair (t, t + k) of every episode: frame index, episode, camera, orientation, action, state, task."""
    refs = src.episodes()
    assert [src.episode_length(r) for r in refs] == list(LENGTHS)
    n = 0
    for e, ref in enumerate(refs):
        for t in range(LENGTHS[e] - k):
            s = src.read_pair(ref, t, k)
            assert decode(s["prev"]) == (t, e, CAMERA_ID[camera], upright)
            assert decode(s["curr"]) == (t + k, e, CAMERA_ID[camera], upright)
            np.testing.assert_array_equal(s["action"], action(e, t))
            np.testing.assert_array_equal(s["actions"], np.stack([action(e, t + j) for j in range(k)]))
            np.testing.assert_array_equal(s["state"], state(e, t))
            assert s["task"] == TASKS[EPISODE_TASK[e]]
            assert s["episode"].endswith(f"episode_{e:06d}") and s["source"] == "lerobot"
            n += 1
    return n


@pytest.mark.parametrize(("version", "codec"), LAYOUTS)
@pytest.mark.parametrize("camera", ["agentview", "wrist"])
def test_every_pair_of_every_episode(tmp_path, version, codec, camera):
    root = (write_v21 if version == "v2.1" else write_v30)(tmp_path / "ds", codec=codec)
    src = build_source("lerobot", str(root), camera=camera)
    assert src.version == version
    assert _check_every_pair(src, camera, k=2) == sum(L - 2 for L in LENGTHS)


def test_v30_units_are_the_consolidated_files(tmp_path):
    src = LeRobotSource(str(write_v30(tmp_path / "ds")))
    assert [p.rsplit("/", 1)[1] for p in src.units] == ["file-000.parquet", "file-001.parquet"]
    assert [r.key for r in src.episodes_in(src.units[0])] == ["episode_000000", "episode_000001"]
    assert [r.key for r in src.episodes_in(src.units[1])] == ["episode_000002"]
    # episode 1 starts LENGTHS[0] / fps seconds into the concatenated mp4
    assert src.episodes_meta[1].videos["observation.images.image"][1] == pytest.approx(LENGTHS[0] / 10)


def test_v21_chunking_and_large_gaps(tmp_path):
    src = LeRobotSource(str(write_v21(tmp_path / "ds")))
    assert "/chunk-001/" in src.episodes_meta[2].data_file  # chunks_size 2: episode 2 in chunk 1
    ref = src.episodes()[2]
    s = src.read_pair(ref, 0, LENGTHS[2] - 1)  # first and last frame: two seeks
    assert decode(s["prev"])[:2] == (0, 2) and decode(s["curr"])[:2] == (LENGTHS[2] - 1, 2)
    with pytest.raises(IndexError):
        src.read_pair(ref, 1, LENGTHS[2] - 1)  # past the episode's end


def test_openpi_image_features_v20(tmp_path):
    """openpi's physical-intelligence/libero: codebase v2.0, cameras as PNG cells in the parquet."""
    root = write_v21(tmp_path / "ds", keys=OPENPI_KEYS, images=True, version="v2.0")
    src = build_source("lerobot", str(root), keys="openpi_libero", camera="wrist")
    assert src.camera_dtype == "image"
    assert _check_every_pair(src, "wrist", k=1) == sum(L - 1 for L in LENGTHS)


def test_flip_images_false_rotates_back_to_the_render(tmp_path):
    src = LeRobotSource(str(write_v30(tmp_path / "ds")), flip_images=False)
    s = src.read_pair(src.episodes()[1], 1, 3)
    assert decode(s["prev"]) == (1, 1, CAMERA_ID["agentview"], False)


def test_timestamp_tolerance(tmp_path):
    """A parquet timestamp 0.03 s off the video's frames violates LeRobot's 1e-4 s tolerance."""
    src = LeRobotSource(str(write_v21(tmp_path / "ds", timestamp_shift=0.03)))
    with pytest.raises(FrameTimestampError, match="tolerance_s"):
        src.read_pair(src.episodes()[0], 1, 1)
    loose = LeRobotSource(str(tmp_path / "ds"), tolerance_s=0.05)  # 0.03 s is then nearest-frame
    assert decode(loose.read_pair(loose.episodes()[0], 1, 1)["prev"])[0] == 1


def test_wrong_key_map_lists_features(tmp_path):
    root = write_v30(tmp_path / "ds")
    with pytest.raises(KeyError, match="openpi_libero.*|features present"):
        LeRobotSource(str(root), keys="openpi_libero")


def test_hub_id_not_cached_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="--local-dir"):
        LeRobotSource("someorg/not_cached_dataset")


def test_action_probe_reads_lerobot_by_name(tmp_path):
    assert "lerobot" in SOURCES
    root = write_v30(tmp_path / "ds")
    pairs = load_pairs("lerobot", str(root), gap=3)
    assert len(pairs) == sum(L - 3 for L in LENGTHS)
    for i in range(len(pairs)):
        e = int(str(pairs.episode[i]).rsplit("_", 1)[1])
        t = int(pairs.t[i])
        assert decode(pairs.prev[i])[:2] == (t, e) and decode(pairs.curr[i])[:2] == (t + 3, e)
        np.testing.assert_array_equal(pairs.action[i], action(e, t))
        assert pairs.task[i] == TASKS[EPISODE_TASK[e]] and pairs.length[i] == LENGTHS[e]


def test_v21_info_is_read_from_its_templates(tmp_path):
    root = write_v21(tmp_path / "ds")
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1" and (root / "meta" / "episodes_stats.jsonl").exists()
    src = LeRobotSource(str(root))
    assert src.tasks == dict(enumerate(TASKS)) and src.fps == 10


def test_pretraining_mixture_in_a_loader_worker(tmp_path):
    """The pretraining path: PairMixture draws (o_t, o_t+k) pairs, decoded inside a DataLoader worker."""
    import torch
    from torch.utils.data import DataLoader

    from avbr.data import GapSchedule, PairMixture, StreamSampler, collate_pairs

    src = LeRobotSource(str(write_v30(tmp_path / "ds")), gap=GapSchedule(max_gap=4))
    src.read_pair(src.episodes()[0], 0, 1)  # containers opened here must not travel to the worker
    mix = PairMixture([src], [1.0], img_size=64, still_ratio=0.0)
    for g in range(20):
        s = mix[g]
        t, e, cam, upright = decode(s["prev"])
        assert (t, cam, upright) == (s["t"], CAMERA_ID["agentview"], True) and s["episode"].endswith(f"{e:06d}")
        assert decode(s["curr"])[:2] == (t + s["gap"], e) and t + s["gap"] < LENGTHS[e]
        np.testing.assert_array_equal(s["action"], action(e, t))
    loader = DataLoader(mix, batch_size=4, sampler=StreamSampler(), num_workers=1, collate_fn=collate_pairs)
    batch = next(iter(loader))
    assert torch.equal(batch["curr"], collate_pairs([mix[g] for g in range(4)])["curr"])


def test_long_gop_with_b_frames(tmp_path):
    """Keyframes 8 frames apart and x264's B-frames (decode order differs from display order)."""
    root = write_v21(tmp_path / "ds", gop=8)
    probe = av.open(str(next((root / "videos").rglob("episode_000002.mp4"))))
    packets = [p.pts for p in probe.demux(probe.streams.video[0]) if p.size]
    probe.close()
    assert packets != sorted(packets)  # the fixture really reorders
    for k in (1, 3):
        assert _check_every_pair(LeRobotSource(str(root)), "agentview", k=k) == sum(L - k for L in LENGTHS)
