"""The mixture: ratios, determinism by index, resumable sampling, skipping unreadable files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pair_fixtures import truncate, write_images, write_libero, write_video
from torch.utils.data import DataLoader

from avbr.data import (
    GapSchedule,
    HDF5DemoSource,
    ImageFolderSource,
    PairMixture,
    ProceduralStillSource,
    ProceduralVideoSource,
    StreamSampler,
    VideoFolderSource,
    collate_pairs,
)


def procedural_mixture(still_ratio: float = 0.3, seed: int = 0) -> PairMixture:
    return PairMixture(
        [ProceduralVideoSource(num_episodes=20, size=32), ProceduralStillSource(num_episodes=20, size=32)],
        [1.0, 1.0], img_size=24, still_ratio=still_ratio, seed=seed,
    )


def test_still_ratio_and_collation() -> None:
    mix = procedural_mixture(0.3)
    assert mix.source_probabilities() == pytest.approx({"procedural": 0.7, "procedural_stills": 0.3})
    batch = collate_pairs([mix[i] for i in range(400)])
    assert batch["prev"].shape == (400, 24, 24, 3) and batch["prev"].dtype == torch.uint8
    assert batch["is_still"].float().mean().item() == pytest.approx(0.3, abs=0.07)
    assert (batch["gap"][batch["is_still"]] == 0).all() and (batch["gap"][~batch["is_still"]] >= 1).all()


def test_one_group_only_takes_everything() -> None:
    mix = PairMixture([ProceduralVideoSource(num_episodes=2)], [1.0], img_size=16, still_ratio=0.3)
    assert mix.probs.tolist() == [1.0]


def test_samples_depend_only_on_seed_and_index() -> None:
    a, b = procedural_mixture(seed=1), procedural_mixture(seed=1)
    for g in (5, 0, 17):
        assert np.array_equal(a[g]["curr"], b[g]["curr"]) and a[g]["gap"] == b[g]["gap"]
    assert not all(np.array_equal(a[g]["curr"], procedural_mixture(seed=2)[g]["curr"]) for g in range(4))


def test_stream_sampler_partitions_and_resumes() -> None:
    it0, it1 = iter(StreamSampler(0, 0, 2)), iter(StreamSampler(0, 1, 2))
    assert [next(it0) for _ in range(3)] == [0, 2, 4] and [next(it1) for _ in range(3)] == [1, 3, 5]
    resumed = iter(StreamSampler(4, 1, 2))
    assert next(resumed) == 5


def test_corrupt_mp4_and_truncated_hdf5_are_skipped_logged_and_counted(tmp_path, caplog) -> None:
    vids, demos = tmp_path / "videos", tmp_path / "demos"
    write_video(vids / "good.mp4", 10)
    (vids / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    write_libero(demos / "good.hdf5")
    truncate(write_libero(demos / "truncated.hdf5", demos=3, length=30, size=32))
    gap = GapSchedule(max_gap=3)
    mix = PairMixture([VideoFolderSource(str(vids), gap), HDF5DemoSource(str(demos), gap)], [1, 1], img_size=16)
    with caplog.at_level(logging.WARNING, logger="avbr.data.mixture"):
        samples = [mix[g] for g in range(60)]
    assert {s["episode"].split(":")[0] for s in samples} == {"good.mp4", "good.hdf5"}
    assert sum(s["n_skipped"] for s in samples) == mix.skipped > 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum("corrupt.mp4" in m for m in lines) == 1 and sum("truncated.hdf5" in m for m in lines) == 1
    assert mix.bad_files == {str(vids / "corrupt.mp4"), str(demos / "truncated.hdf5")}


def test_all_files_unreadable_fails_with_a_clear_error(tmp_path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"junk")
    mix = PairMixture([VideoFolderSource(str(tmp_path))], [1.0], img_size=16, max_retries=5)
    with pytest.raises(RuntimeError, match="unreadable files"):
        mix[0]


def test_frames_are_decoded_in_loader_workers(tmp_path) -> None:
    write_video(tmp_path / "v" / "a.mp4", 8)
    write_images(tmp_path / "i")
    mix = PairMixture([VideoFolderSource(str(tmp_path / "v")), ImageFolderSource(str(tmp_path / "i"))], [1, 1], img_size=16)
    loader = DataLoader(mix, batch_size=4, sampler=StreamSampler(), num_workers=1, collate_fn=collate_pairs)
    batch = next(iter(loader))
    expected = collate_pairs([mix[g] for g in range(4)])
    assert torch.equal(batch["curr"], expected["curr"]) and torch.equal(batch["gap"], expected["gap"])
