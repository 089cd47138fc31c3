"""Write demonstrations as a LeRobotDataset v3.0 (read back by :class:`avbr.data.lerobot.LeRobotSource`).

The layout follows LeRobot's writer (huggingface/lerobot ``src/lerobot/datasets/dataset_writer.py``,
``dataset_metadata.py``, ``io_utils.py``, ``utils.py``); see :mod:`avbr.data.lerobot` for the
file tree. What this writer produces, for ``E`` episodes of ``T_e`` frames:

- ``data/chunk-000/file-000.parquet``: one row per frame, one row group per episode (LeRobot's
  ``write_table_one_row_group_per_episode``): state and action as ``fixed_size_list<float32>``
  (HF ``Sequence(length=D)``), ``timestamp`` float32 ``= frame_index / fps``, ``frame_index``,
  ``episode_index``, ``index`` (global), ``task_index`` (int64).
- ``videos/<camera key>/chunk-000/file-000.mp4``: every episode of that camera in one stream,
  back to back (what LeRobot gets by concatenating episode files), so episode ``e`` starts at
  ``from_timestamp = (frames before e) / fps``.
- ``meta/episodes/chunk-000/file-000.parquet``: one row per episode (indices, ``tasks``,
  ``length``, data and video chunk/file indices, ``dataset_from_index``/``dataset_to_index``,
  ``videos/<key>/from_timestamp``/``to_timestamp``, ``stats/<key>/{min,max,mean,std,count}``),
  plus, for demos of :mod:`avbr.envs`, where each episode started: ``avbr/init_source``,
  ``avbr/init_seed`` and ``avbr/init_scene_state`` (the flattened MuJoCo state after the reset;
  what ``eval/libero.py``'s held-out check compares; LeRobot ignores extra episode columns).
- ``meta/tasks.parquet`` (``task_index`` with the task string as the pandas index ``task``),
  ``meta/info.json`` and ``meta/stats.json``.

Everything stays in file 0 of chunk 0: LeRobot starts a new file past 100 MB of parquet or 200 MB
of video, which the readers handle either way (they follow the per-episode indices).

Frames are written **upright**, the convention of the LIBERO conversions (see
:mod:`avbr.data.lerobot`), with the ``lerobot_libero`` key map by default: cameras
``observation.images.image`` (agentview) and ``observation.images.image2`` (wrist), 8-D
``observation.state`` (eef position 3, axis-angle 3, gripper qpos 2), 7-D ``action``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from avbr.data.lerobot import KEY_MAPS, LeRobotKeys
from avbr.envs.observations import policy_frames

__all__ = ["VideoEncoding", "LeRobotWriter"]

_CODEC_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264", "libx265": "hevc"}


@dataclass(frozen=True)
class VideoEncoding:
    """How camera streams are encoded (LeRobot's defaults: ``configs/video.py``).

    Attributes:
        codec: FFmpeg encoder: ``libsvtav1`` (AV1, LeRobot's default) or ``libx264`` (H.264).
        crf: quality (lower = better, larger).
        gop: keyframe interval in frames (LeRobot: 2, so any frame is at most one decode away).
        pix_fmt: pixel format.
        preset: encoder speed preset (``None``: the encoder's default).
    """

    codec: str = "libsvtav1"
    crf: int = 30
    gop: int = 2
    pix_fmt: str = "yuv420p"
    preset: str | None = None

    def options(self) -> dict[str, str]:
        opts = {"crf": str(self.crf), "g": str(self.gop)}
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        return opts


@dataclass
class _Camera:
    key: str
    container: Any
    stream: Any
    height: int
    width: int
    frames: int = 0


def _stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics of ``x [T, D]``: min, max, mean, std, count."""
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def _flat(state: Any) -> list[float]:
    """A MuJoCo state as a flat list (``[]`` when not recorded)."""
    return [] if state is None else np.asarray(state, np.float64).ravel().tolist()


class LeRobotWriter:
    """Append episodes to a new LeRobotDataset v3.0 folder.

    Args:
        root: output folder (created; must not already hold ``meta/info.json``).
        fps: frames per second of the recordings (LIBERO's control frequency is 20 Hz).
        keys: key map naming the camera, state and action features.
        video: encoding of the camera streams.
        robot_type: ``info.json``'s ``robot_type``.
    """

    def __init__(self, root: str | Path, fps: int, keys: str | LeRobotKeys = "lerobot_libero",
                 video: VideoEncoding = VideoEncoding(), robot_type: str = "panda") -> None:
        self.path = Path(root)
        if (self.path / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.path} already holds a LeRobotDataset; pick a new folder")
        self.fps = int(fps)
        self.keys = KEY_MAPS.get(keys) if isinstance(keys, str) else keys
        self.video = video
        self.robot_type = robot_type
        self._cameras: dict[str, _Camera] = {}
        self._data: pq.ParquetWriter | None = None
        self._episodes: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._dims: dict[str, int] = {}
        self._all: dict[str, list[np.ndarray]] = {self.keys.state: [], self.keys.action: []}
        self.total_frames = 0

    # -- writing -------------------------------------------------------------------------------
    def add_episode(self, frames: dict[str, np.ndarray], state: np.ndarray, action: np.ndarray, task: str,
                    extra: dict[str, Any] | None = None) -> None:
        """Append one episode.

        Args:
            frames: camera role (a key of ``keys.cameras``) -> upright ``uint8 [T, H, W, 3]``.
            state: ``float [T, D]``.
            action: ``float [T, A]``, ``action[t]`` taken at frame ``t``.
            task: the instruction.
            extra: more columns of the episode's ``meta/episodes`` row (the same names in every
                episode).
        """
        length = len(action)
        state = np.asarray(state, np.float32).reshape(length, -1)
        action = np.asarray(action, np.float32).reshape(length, -1)
        if set(frames) != set(self.keys.cameras):
            raise ValueError(f"frames for cameras {sorted(frames)}, the key map has {sorted(self.keys.cameras)}")
        for role, imgs in frames.items():
            if imgs.shape[0] != length or imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[3] != 3:
                raise ValueError(f"{role}: expected uint8 [{length}, H, W, 3] frames, got {imgs.dtype} {imgs.shape}")
        for key, x in ((self.keys.state, state), (self.keys.action, action)):
            if self._dims.setdefault(key, x.shape[1]) != x.shape[1]:
                raise ValueError(f"{key}: width {x.shape[1]} differs from the first episode's {self._dims[key]}")
        episode = len(self._episodes)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        meta: dict[str, Any] = {"episode_index": episode, "tasks": [task], "length": length,
                                "data/chunk_index": 0, "data/file_index": 0,
                                "dataset_from_index": self.total_frames, "dataset_to_index": self.total_frames + length,
                                **(extra or {})}
        for role, imgs in frames.items():
            cam = self._camera(self.keys.cameras[role], imgs.shape[1], imgs.shape[2])
            start = cam.frames
            self._encode(cam, imgs)
            meta.update({f"videos/{cam.key}/chunk_index": 0, f"videos/{cam.key}/file_index": 0,
                         f"videos/{cam.key}/from_timestamp": start / self.fps,
                         f"videos/{cam.key}/to_timestamp": cam.frames / self.fps})
        frame_index = np.arange(length, dtype=np.int64)
        table = pa.table({
            self.keys.state: pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), state.shape[1]),
            self.keys.action: pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), action.shape[1]),
            "timestamp": pa.array((frame_index / self.fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(length, episode, np.int64)),
            "index": pa.array(self.total_frames + frame_index),
            self.keys.task: pa.array(np.full(length, task_index, np.int64)),
        })
        if self._data is None:
            out = self.path / "data" / "chunk-000" / "file-000.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            self._data = pq.ParquetWriter(out, table.schema)
        self._data.write_table(table, row_group_size=max(length, 1))
        for key, x in ((self.keys.state, state), (self.keys.action, action)):
            self._all[key].append(x)
            meta.update({f"stats/{key}/{s}": v.tolist() for s, v in _stats(x).items()})
        self._episodes.append(meta)
        self.total_frames += length

    def add(self, record: Any) -> None:
        """Append a recorded episode of :mod:`avbr.envs` (``EpisodeRecord`` with ``data``, as
        ``avbr.envs.demos.DemoWriter.add`` takes it): frames ``agentview_rgb``/``eye_in_hand_rgb``
        in the simulator's orientation (stored in the ``flip_images=True`` view of the LIBERO
        conversions, :func:`avbr.envs.observations.policy_frames`), state = ``ee_states`` (6) ++
        ``gripper_states`` (2), ``actions``, task = the benchmark's instruction (``record.language``,
        what the policy is given and what OpenVLA's RLDS and the LeRobot conversions store; a LIBERO
        BDDL's ``problem_info`` wording can differ: "pick the alphabet soup..." for "pick up the
        alphabet soup..."), else ``attrs["problem_info"]["language_instruction"]``,
        and the episode's start (``avbr/init_source``, ``avbr/init_seed``, ``avbr/init_scene_state``,
        the last empty when not recorded)."""
        if not record.success or record.data is None:
            raise ValueError("only successful episodes recorded with record=True can be written")
        data = record.data
        task = record.language or json.loads(data["attrs"]["problem_info"])["language_instruction"]
        self.add_episode(
            {"agentview": policy_frames(data["agentview_rgb"], True), "wrist": policy_frames(data["eye_in_hand_rgb"], True)},
            state=np.concatenate([data["ee_states"], data["gripper_states"]], axis=1),
            action=data["actions"], task=task,
            extra={"avbr/init_source": record.init_source, "avbr/init_seed": int(record.init_index),
                   "avbr/init_scene_state": _flat(data.get("init_scene_state"))})

    def _camera(self, key: str, height: int, width: int) -> _Camera:
        if key in self._cameras:
            cam = self._cameras[key]
            if (cam.height, cam.width) != (height, width):
                raise ValueError(f"{key}: frame size {height}x{width} differs from the first episode's")
            return cam
        out = self.path / "videos" / key / "chunk-000" / "file-000.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(out), mode="w")
        stream = container.add_stream(self.video.codec, rate=self.fps, options=self.video.options())
        stream.width, stream.height, stream.pix_fmt = width, height, self.video.pix_fmt
        stream.codec_context.time_base = Fraction(1, self.fps)
        self._cameras[key] = cam = _Camera(key, container, stream, height, width)
        return cam

    def _encode(self, cam: _Camera, imgs: np.ndarray) -> None:
        for img in imgs:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = cam.frames  # one continuous stream: episode e starts where e - 1 ended
            frame.time_base = Fraction(1, self.fps)
            cam.container.mux(cam.stream.encode(frame))
            cam.frames += 1

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush the videos and parquet files and write the metadata."""
        for cam in self._cameras.values():
            cam.container.mux(cam.stream.encode(None))
            cam.container.close()
        if self._data is not None:
            self._data.close()
        meta = self.path / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        for e in self._episodes:
            e["meta/episodes/chunk_index"], e["meta/episodes/file_index"] = 0, 0
        if self._episodes:
            pq.write_table(pa.Table.from_pylist(self._episodes), meta / "episodes" / "chunk-000" / "file-000.parquet")
        self._write_tasks(meta / "tasks.parquet")
        stats = {k: {s: v.tolist() for s, v in _stats(np.concatenate(x)).items()} for k, x in self._all.items() if x}
        (meta / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        (meta / "info.json").write_text(json.dumps(self._info(), indent=2) + "\n")

    def _write_tasks(self, path: Path) -> None:
        # What pandas.DataFrame({"task_index": ...}, index=pd.Index(tasks, name="task")).to_parquet
        # writes (LeRobot's write_tasks): both columns plus the pandas schema metadata naming
        # "task" as the index, so pandas.read_parquet gives LeRobot its task-indexed frame.
        tasks = sorted(self._tasks, key=self._tasks.get)
        pandas_meta = {
            "index_columns": ["task"], "column_indexes": [],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": "task", "field_name": "task", "pandas_type": "unicode",
                         "numpy_type": "object", "metadata": None}],
            "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
        table = pa.table({"task_index": pa.array([self._tasks[t] for t in tasks], pa.int64()),
                          "task": pa.array(tasks, pa.string())})
        pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path)

    def _info(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for key, cam in self._cameras.items():
            features[key] = {
                "dtype": "video", "shape": [cam.height, cam.width, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": cam.height, "video.width": cam.width,
                         "video.codec": _CODEC_NAMES.get(self.video.codec, self.video.codec),
                         "video.pix_fmt": self.video.pix_fmt, "video.is_depth_map": False,
                         "video.fps": self.fps, "video.channels": 3, "has_audio": False}}
        for key in (self.keys.state, self.keys.action):
            features[key] = {"dtype": "float32", "shape": [self._dims.get(key, 0)], "names": None, "fps": self.fps}
        for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                           ("index", "int64"), (self.keys.task, "int64")):
            features[key] = {"dtype": dtype, "shape": [1], "names": None, "fps": self.fps}
        return {"codebase_version": "v3.0", "robot_type": self.robot_type,
                "total_episodes": len(self._episodes), "total_frames": self.total_frames,
                "total_tasks": len(self._tasks), "chunks_size": 1000, "data_files_size_in_mb": 100,
                "video_files_size_in_mb": 200, "fps": self.fps, "splits": {"train": f"0:{len(self._episodes)}"},
                "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
                "features": features}
