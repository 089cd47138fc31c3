"""LeRobotWriter: v3.0 output read back by LeRobotSource, and its layout against the fixture's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from lerobot_fixtures import CAMERA_ID, decode, pattern, write_v30

from avbr.data.lerobot import LeRobotSource
from avbr.data.lerobot_writer import LeRobotWriter, VideoEncoding
from avbr.envs.config import EpisodeRecord

LENGTHS = (6, 4, 8)
H264 = VideoEncoding(codec="libx264", crf=18)


def _write(root, lengths=LENGTHS):
    w = LeRobotWriter(root, fps=20, video=H264)
    for e, n in enumerate(lengths):
        frames = {role: np.stack([pattern(t, e, CAMERA_ID[role]) for t in range(n)]) for role in CAMERA_ID}
        act = 100.0 * e + np.arange(n * 7, dtype=np.float32).reshape(n, 7)
        w.add_episode(frames, state=-act[:, :1].repeat(8, 1), action=act, task=f"task {e % 2}")
    w.close()
    return root


@pytest.mark.parametrize("camera", ["agentview", "wrist"])
def test_round_trip(tmp_path, camera):
    src = LeRobotSource(str(_write(tmp_path / "ds")), camera=camera)
    assert src.version == "v3.0" and src.fps == 20
    for e, ref in enumerate(src.episodes()):
        assert src.episode_length(ref) == LENGTHS[e]
        for t in range(LENGTHS[e] - 2):
            s = src.read_pair(ref, t, 2)
            assert decode(s["prev"]) == (t, e, CAMERA_ID[camera], True)
            assert decode(s["curr"]) == (t + 2, e, CAMERA_ID[camera], True)
            np.testing.assert_array_equal(s["action"], 100.0 * e + np.arange(7 * t, 7 * t + 7))
            assert s["task"] == f"task {e % 2}"


def test_layout_matches_lerobot(tmp_path):
    """Same file tree, info templates and episode/task table columns as the fixture written from LeRobot's code."""
    ours = _write(tmp_path / "ours")
    ref = write_v30(tmp_path / "ref")
    ours_info = json.loads((ours / "meta/info.json").read_text())
    ref_info = json.loads((ref / "meta/info.json").read_text())
    for key in ("codebase_version", "data_path", "video_path", "chunks_size"):
        assert ours_info[key] == ref_info[key]
    assert ours_info["total_episodes"] == 3 and ours_info["total_frames"] == sum(LENGTHS)
    assert set(ours_info["features"]) == set(ref_info["features"])
    assert ours_info["features"]["observation.images.image"]["info"]["video.codec"] == "h264"
    ours_eps = pq.read_table(ours / "meta/episodes/chunk-000/file-000.parquet")
    ref_eps = pq.read_table(ref / "meta/episodes/chunk-000/file-000.parquet")
    needed = {c for c in ref_eps.column_names if not c.startswith("stats/")}
    assert needed <= set(ours_eps.column_names)
    assert ours_eps.column("dataset_to_index").to_pylist() == list(np.cumsum(LENGTHS))
    tasks = pq.read_table(ours / "meta/tasks.parquet")
    assert tasks.column_names == ["task_index", "task"] and tasks.column("task").to_pylist() == ["task 0", "task 1"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    data = pq.ParquetFile(ours / "data/chunk-000/file-000.parquet")
    assert data.num_row_groups == len(LENGTHS)  # one row group per episode, as LeRobot writes
    assert data.schema_arrow.field("observation.state").type == pq.read_schema(
        ref / "data/chunk-000/file-000.parquet").field("observation.state").type


def test_add_record_flips_upright(tmp_path):
    """``add(record)`` takes DemoWriter's arrays: simulator-orientation frames, ee + gripper state."""
    n = 5
    data = {"agentview_rgb": np.stack([pattern(t, 0, 1)[::-1, ::-1] for t in range(n)]),
            "eye_in_hand_rgb": np.stack([pattern(t, 0, 2)[::-1, ::-1] for t in range(n)]),
            "ee_states": np.arange(n * 6, dtype=np.float64).reshape(n, 6),
            "gripper_states": -np.ones((n, 2)), "actions": np.ones((n, 7)),
            "attrs": {"problem_info": json.dumps({"language_instruction": "pick up the ketchup"})}}
    w = LeRobotWriter(tmp_path / "ds", fps=20, video=H264)
    w.add(EpisodeRecord(task_id=0, init_index=0, episode=0, success=True, length=n, data=data))
    # The benchmark's instruction wins over the BDDL's wording (LIBERO's differ, e.g. "pick the
    # alphabet soup" in the BDDL of the task "pick up the alphabet soup").
    w.add(EpisodeRecord(task_id=0, init_index=2, episode=2, success=True, length=n, data=data,
                        language="pick up the ketchup and place it in the basket"))
    with pytest.raises(ValueError, match="successful"):
        w.add(EpisodeRecord(task_id=0, init_index=1, episode=1, success=False, length=n, data=data))
    w.close()
    src = LeRobotSource(str(tmp_path / "ds"), camera="wrist")
    s = src.read_pair(src.episodes()[0], 1, 3)
    assert decode(s["prev"]) == (1, 0, 2, True) and s["task"] == "pick up the ketchup"
    assert src.read_pair(src.episodes()[1], 0, 1)["task"] == "pick up the ketchup and place it in the basket"
    np.testing.assert_array_equal(s["state"], [6, 7, 8, 9, 10, 11, -1, -1])
    with pytest.raises(FileExistsError):
        LeRobotWriter(tmp_path / "ds", fps=20)


def test_tasks_table_reads_as_lerobot_loads_it(tmp_path):
    """LeRobot's ``load_tasks`` is ``pd.read_parquet(meta/tasks.parquet)`` indexed by task string."""
    pd = pytest.importorskip("pandas", reason="pandas (not a dependency) cross-checks the pandas schema metadata")
    tasks = pd.read_parquet(_write(tmp_path / "ds") / "meta" / "tasks.parquet")
    assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
    assert int(tasks.loc["task 1"].task_index) == 1
