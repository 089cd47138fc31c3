"""Tiny LeRobotDatasets written the way LeRobot's own writers lay them out (pyarrow + PyAV only).

Followed, per file (huggingface/lerobot at 7427f31):

- ``src/lerobot/datasets/utils.py``: path templates (``DEFAULT_DATA_PATH``, ``DEFAULT_VIDEO_PATH``,
  ``DEFAULT_EPISODES_PATH``, ``DEFAULT_TASKS_PATH``, legacy ``meta/*.jsonl``), ``DatasetInfo`` fields.
- ``src/lerobot/scripts/convert_dataset_v21_to_v30.py``: the v2.1 layout (``episode_chunk``
  templates, ``episodes.jsonl``/``tasks.jsonl``/``episodes_stats.jsonl`` rows) and how v3.0 files
  are built from it: data parquet files concatenated with ``dataset_from/to_index``, episode mp4s
  concatenated with ``videos/<key>/from_timestamp`` = summed durations, ``tasks.parquet`` from a
  ``task``-indexed frame.
- ``src/lerobot/datasets/video_utils.py`` ``concatenate_video_files``: FFmpeg's concat demuxer with
  stream copy (done here through PyAV's ``concat`` format).
- ``src/lerobot/datasets/feature_utils.py`` ``get_hf_features_from_features``: 1-D features as
  ``Sequence(length=D)`` (arrow ``fixed_size_list``), ``dtype: image`` as ``struct<bytes, path>``.
- ``src/lerobot/configs/video.py``: ``g=2`` keyframe interval, ``yuv420p``.
- openpi ``examples/libero/convert_libero_data_to_lerobot.py``: the ``physical-intelligence/libero``
  features (``image``, ``wrist_image`` as ``dtype: image``, ``state`` [8], ``actions`` [7]).

Every frame carries an index pattern (:func:`pattern`): the bits of the frame index, the episode
index and the camera id as black/white 8-px blocks in three bands, and a bottom band red on the
left, blue on the right (orientation). :func:`decode` reads it back through lossy video coding.
Actions are ``1000 * episode + 10 * t + j`` and states ``-(1000 * episode + 10 * t + j)``.
"""

from __future__ import annotations

import json
import tempfile
from fractions import Fraction
from io import BytesIO
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SIZE = 64
FPS = 10
LENGTHS = (7, 5, 9)  # frames of episodes 0, 1, 2
TASKS = ("put the bowl on the plate", "open the drawer")
EPISODE_TASK = (0, 1, 0)  # task index of each episode
LEROBOT_KEYS = {"agentview": "observation.images.image", "wrist": "observation.images.image2",
                "state": "observation.state", "action": "action"}
OPENPI_KEYS = {"agentview": "image", "wrist": "wrist_image", "state": "state", "action": "actions"}
CAMERA_ID = {"agentview": 1, "wrist": 2}


def pattern(t: int, episode: int, camera: int) -> np.ndarray:
    """Upright ``uint8 [64, 64, 3]`` frame encoding ``t``, ``episode`` and ``camera`` (8 bits each)."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    for band, value in enumerate((t, episode, camera)):
        for bit in range(8):
            if (value >> bit) & 1:
                img[band * 16 : band * 16 + 16, bit * 8 : bit * 8 + 8] = 255
    img[48:, :32] = (255, 0, 0)
    img[48:, 32:] = (0, 0, 255)
    return img


def decode(img: np.ndarray) -> tuple[int, int, int, bool]:
    """``(t, episode, camera, upright)`` read from a :func:`pattern` frame (as decoded, lossy)."""
    upright = img[56, 8, 0] > 128 and img[56, 8, 2] < 128  # red bottom-left
    if not upright:
        img = img[::-1, ::-1]
    vals = []
    for band in range(3):
        blocks = img[band * 16 + 4 : band * 16 + 12].reshape(8, 8, 8, 3).mean(axis=(0, 2, 3))
        vals.append(sum(1 << bit for bit in range(8) if blocks[bit] > 128))
    return vals[0], vals[1], vals[2], bool(upright)


def action(episode: int, t: int) -> np.ndarray:
    return 1000.0 * episode + 10.0 * t + np.arange(7, dtype=np.float32)


def state(episode: int, t: int) -> np.ndarray:
    return -(1000.0 * episode + 10.0 * t + np.arange(8, dtype=np.float32))


def _encode_mp4(path: Path, frames: list[np.ndarray], codec: str, gop: int = 2) -> None:
    """One episode's mp4, as LeRobot's encoder writes it (g=2, yuv420p, constant frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"g": str(gop), "crf": "18"}
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=FPS, options=opts)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _concat_mp4(inputs: list[Path], output: Path) -> None:
    """FFmpeg's concat demuxer with stream copy (LeRobot's ``concatenate_video_files``)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False) as f:
        f.write("ffconcat version 1.0\n" + "".join(f"file '{p.resolve()}'\n" for p in inputs))
    with av.open(f.name, format="concat", options={"safe": "0"}) as src, av.open(str(output), mode="w") as out:
        in_stream = src.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream, opaque=True)  # stream copy, no codec
        for packet in src.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)


def _frame_table(episode: int, length: int, start: int, keys: dict[str, str], images: bool) -> pa.Table:
    """Rows of one episode as LeRobot's HF features store them."""
    t = np.arange(length)
    cols: dict[str, pa.Array] = {}
    if images:  # dtype: image -> struct<bytes: binary, path: string> (PNG)
        for role in ("agentview", "wrist"):
            cells = []
            for i in t:
                buf = BytesIO()
                Image.fromarray(pattern(int(i), episode, CAMERA_ID[role])).save(buf, format="PNG")
                cells.append({"bytes": buf.getvalue(), "path": None})
            cols[keys[role]] = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    for name, fn, dim in (("state", state, 8), ("action", action, 7)):
        values = np.stack([fn(episode, int(i)) for i in t]).astype(np.float32)
        cols[keys[name]] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim)
    cols["timestamp"] = pa.array((t / FPS).astype(np.float32))
    cols["frame_index"] = pa.array(t.astype(np.int64))
    cols["episode_index"] = pa.array(np.full(length, episode, np.int64))
    cols["index"] = pa.array((start + t).astype(np.int64))
    cols["task_index"] = pa.array(np.full(length, EPISODE_TASK[episode], np.int64))
    return pa.table(cols)


def _features(keys: dict[str, str], camera_dtype: str, codec: str) -> dict:
    cam = {"dtype": camera_dtype, "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channel"]}
    if camera_dtype == "video":
        cam["info"] = {"video.fps": FPS, "video.height": SIZE, "video.width": SIZE, "video.channels": 3,
                       "video.codec": {"libx264": "h264", "libsvtav1": "av1"}[codec], "video.pix_fmt": "yuv420p",
                       "video.is_depth_map": False, "has_audio": False}
    feats = {keys["agentview"]: cam, keys["wrist"]: dict(cam),
             keys["state"]: {"dtype": "float32", "shape": [8], "names": ["state"]},
             keys["action"]: {"dtype": "float32", "shape": [7], "names": ["actions"]}}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def write_v21(root: Path, codec: str = "libx264", keys: dict[str, str] = LEROBOT_KEYS, images: bool = False,
              version: str = "v2.1", timestamp_shift: float = 0.0, gop: int = 2) -> Path:
    """A v2.1 (or v2.0) dataset: one parquet and one mp4 per camera for each episode.

    ``images=True`` stores the cameras as ``dtype: image`` inside the parquet (no videos), as
    openpi's LIBERO conversion does; ``timestamp_shift`` offsets the parquet timestamps (s);
    ``gop`` is the keyframe interval (a long one with x264's B-frames reorders packets).
    """
    chunks_size = 2  # small, so that episode 2 lands in chunk 1 (exercises episode_chunk)
    data_path = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    video_path = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    start = 0
    episodes, stats = [], []
    for e, length in enumerate(LENGTHS):
        fmt = {"episode_chunk": e // chunks_size, "episode_index": e}
        table = _frame_table(e, length, start, keys, images)
        if timestamp_shift:
            table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                                     pa.array((np.arange(length) / FPS + timestamp_shift).astype(np.float32)))
        out = root / data_path.format(**fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
        if not images:
            for role in ("agentview", "wrist"):
                frames = [pattern(i, e, CAMERA_ID[role]) for i in range(length)]
                _encode_mp4(root / video_path.format(video_key=keys[role], **fmt), frames, codec, gop)
        episodes.append({"episode_index": e, "tasks": [TASKS[EPISODE_TASK[e]]], "length": length})
        stats.append({"episode_index": e, "stats": {keys["action"]: {"min": action(e, 0).tolist(),
                                                                     "max": action(e, length - 1).tolist()}}})
        start += length
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episodes))
    (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                              for i, t in enumerate(TASKS)))
    if version == "v2.1":
        (meta / "episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stats))
    info = {"codebase_version": version, "robot_type": "panda", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": len(TASKS), "total_videos": 0 if images else 2 * len(LENGTHS),
            "total_chunks": 2, "chunks_size": chunks_size, "fps": FPS, "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": data_path, "video_path": None if images else video_path,
            "features": _features(keys, "image" if images else "video", codec)}
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return root


def write_v30(root: Path, codec: str = "libx264", keys: dict[str, str] = LEROBOT_KEYS) -> Path:
    """A v3.0 dataset: episodes 0-1 in data/video file 0, episode 2 in file 1 (as the size limits
    of the converter would split them), the mp4s concatenated with FFmpeg's concat demuxer."""
    files = ((0, 1), (2,))
    tmp = Path(tempfile.mkdtemp())
    rows, start = [], 0
    for file_index, eps in enumerate(files):
        tables = []
        for role in ("agentview", "wrist"):
            parts = []
            for e in eps:
                part = tmp / f"{role}_{e}.mp4"
                _encode_mp4(part, [pattern(i, e, CAMERA_ID[role]) for i in range(LENGTHS[e])], codec)
                parts.append(part)
            _concat_mp4(parts, root / f"videos/{keys[role]}/chunk-000/file-{file_index:03d}.mp4")
        from_ts = 0.0
        for e in eps:
            tables.append(_frame_table(e, LENGTHS[e], start, keys, images=False))
            row = {"episode_index": e, "tasks": [TASKS[EPISODE_TASK[e]]], "length": LENGTHS[e],
                   "data/chunk_index": 0, "data/file_index": file_index,
                   "dataset_from_index": start, "dataset_to_index": start + LENGTHS[e]}
            for role in ("agentview", "wrist"):
                row.update({f"videos/{keys[role]}/chunk_index": 0, f"videos/{keys[role]}/file_index": file_index,
                            f"videos/{keys[role]}/from_timestamp": from_ts,
                            f"videos/{keys[role]}/to_timestamp": from_ts + LENGTHS[e] / FPS})
            row.update({f"stats/{keys['action']}/min": action(e, 0).tolist(),
                        "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows.append(row)
            from_ts += LENGTHS[e] / FPS
            start += LENGTHS[e]
        out = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), out)
    meta = root / "meta"
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), meta / "episodes/chunk-000/file-000.parquet")
    # pandas.DataFrame({"task_index": [...]}, index=pd.Index(tasks, name="task")).to_parquet(...):
    # the named index is stored as an ordinary column "task" (after the data columns).
    pq.write_table(pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "task": list(TASKS)}),
                   meta / "tasks.parquet")
    info = {"codebase_version": "v3.0", "robot_type": "panda", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": len(TASKS), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": FPS,
            "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": _features(keys, "video", codec)}
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return root
