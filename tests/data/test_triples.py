"""Frame triples ``(t, t + k, t + 2k)``: every source gives them through the base class's
``read_triple`` (built on ``read_pair``), with the gap truncated to ``2k <= L - 1``."""

from __future__ import annotations

import numpy as np
import pytest
from pair_fixtures import write_bridge_traj, write_egodex_episode, write_images, write_libero, write_video

from avbr.data import (
    CorruptFileError,
    GapSchedule,
    PairMixture,
    ProceduralVideoSource,
    build_source,
    collate_pairs,
)


def grey_index(img: np.ndarray) -> int:
    """Frame index encoded by the fixtures' grey level (``20 * i``), read away from the marker."""
    return round(float(img[img.shape[0] // 2 :, img.shape[1] // 2 :].mean()) / 20)


FIXTURES = {
    # name: (write the fixture under tmp_path, episode length L)
    "video_folder": (lambda p: write_video(p / "task" / "clip.mp4", 9), 9),
    "hdf5_demos": (lambda p: write_libero(p / "demos.hdf5", demos=1, length=9), 9),
    "bridge": (lambda p: write_bridge_traj(p / "2021-08-01_12-00-00" / "raw" / "traj_group0" / "traj0", length=9), 9),
    "egodex": (lambda p: write_egodex_episode(p / "task", 0, n=9), 9),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_video_source_gives_triples(tmp_path, name) -> None:
    write, length = FIXTURES[name]
    write(tmp_path)
    gap = GapSchedule(max_gap=10)
    src = build_source(name, str(tmp_path), gap=gap)
    rng = np.random.default_rng(0)
    gaps = set()
    for _ in range(12):
        s = src.sample(rng, frames=3)
        t, k = s["t"], s["gap"]
        assert 1 <= k and 2 * k <= length - 1 and 0 <= t <= length - 1 - 2 * k
        assert [grey_index(s[f]) for f in ("prev", "curr", "future")] == [t, t + k, t + 2 * k]
        gaps.add(k)
    assert max(gaps) > 1  # the schedule is truncated, not collapsed to k = 1


def test_procedural_triples_render_the_known_frames() -> None:
    src = ProceduralVideoSource(num_episodes=2, episode_length=7, size=32)
    for seed in range(5):
        s = src.sample(np.random.default_rng(seed), frames=3)
        scene = src.scene(src.episodes()[int(s["episode"])])
        t, k = s["t"], s["gap"]
        assert 2 * k <= 6
        for key, i in (("prev", t), ("curr", t + k), ("future", t + 2 * k)):
            assert np.array_equal(s[key], scene.render(i)), key
        assert s["actions"].shape[0] == k  # the metadata is the pair (t, t + k)'s


def test_still_triples_are_the_image_three_times(tmp_path) -> None:
    src = build_source("image_folder", str(write_images(tmp_path)))
    s = src.sample(np.random.default_rng(0), frames=3)
    assert s["is_still"] and s["gap"] == 0
    assert np.array_equal(s["prev"], s["curr"]) and np.array_equal(s["curr"], s["future"])


def test_two_frame_episodes_cannot_make_a_triple(tmp_path) -> None:
    write_video(tmp_path / "short.mp4", 2)
    src = build_source("video_folder", str(tmp_path))
    assert src.sample(np.random.default_rng(0))["gap"] == 1  # a pair still fits
    with pytest.raises(CorruptFileError, match="needs 3"):
        src.sample(np.random.default_rng(0), frames=3)
    with pytest.raises(ValueError, match="frames must be 2"):
        src.sample(np.random.default_rng(0), frames=4)


def test_mixture_collates_triples(tmp_path) -> None:
    mix = PairMixture(
        [ProceduralVideoSource(num_episodes=4, size=40), build_source("image_folder", str(write_images(tmp_path)))],
        [1, 1], img_size=16, still_ratio=0.5, frames=3,
    )
    batch = collate_pairs([mix[g] for g in range(8)])
    assert batch["future"].shape == batch["curr"].shape == (8, 16, 16, 3)
    still = batch["is_still"]
    assert still.any() and (~still).any()
    assert (batch["future"][still] == batch["prev"][still]).all()
    assert "future" not in collate_pairs([PairMixture([ProceduralVideoSource(num_episodes=2)], [1], img_size=16)[0]])
