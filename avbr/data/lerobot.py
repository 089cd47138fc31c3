"""LeRobotDataset (codebase v2.0 / v2.1 and v3.0), read with pyarrow and PyAV.

The ``lerobot`` package is not imported: it cannot be installed beside this project's Python and
torch pins. The layouts below are read from LeRobot's own code (huggingface/lerobot
``src/lerobot/datasets/utils.py``, ``dataset_metadata.py``, ``dataset_writer.py``,
``dataset_reader.py``, ``video_utils.py`` and ``scripts/convert_dataset_v21_to_v30.py``).

**v2.0 / v2.1** (one parquet file and one mp4 per camera for each episode)::

    meta/info.json            codebase_version, fps, chunks_size, features,
                              data_path  "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
                              video_path "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    meta/episodes.jsonl       {"episode_index": i, "tasks": [...], "length": L}
    meta/tasks.jsonl          {"task_index": j, "task": "..."}
    meta/episodes_stats.jsonl per-episode feature statistics (v2.1 only; not read)

    with ``episode_chunk = episode_index // chunks_size``.

**v3.0** (consolidated files, many episodes each)::

    meta/info.json            as above, data_path "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                              video_path "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    meta/episodes/chunk-*/file-*.parquet
                              one row per episode: episode_index, tasks, length,
                              data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                              videos/<key>/chunk_index, videos/<key>/file_index,
                              videos/<key>/from_timestamp, videos/<key>/to_timestamp, stats/...
    meta/tasks.parquet        task_index, with the task string as the (pandas) index column "task"

Every data parquet row is one frame: the non-video features (state, action, ``dtype: image``
features as ``struct<bytes, path>`` PNG/JPEG), ``timestamp`` (s, ``frame_index / fps``),
``frame_index``, ``episode_index``, ``index`` (global) and ``task_index``.

**Video frames by timestamp, as LeRobot decodes them** (``decode_video_frames_pyav``): the query
time of frame ``t`` is its ``timestamp`` plus, in v3.0, the episode's
``videos/<key>/from_timestamp`` (its start inside the consolidated mp4); the decoder seeks to the
keyframe at or before the first query and decodes forward; each query takes the decoded frame
nearest in time, and a nearest frame farther than ``tolerance_s`` (LeRobot's default ``1e-4`` s)
raises ``FrameTimestampError``. Here the open container is kept per worker (a v3.0 mp4 holds many
episodes, and opening it parses its whole index) and a pair far apart seeks twice.

**Key maps** (:class:`LeRobotKeys`, registered in ``KEY_MAPS``) name the camera, state and action
features. Both LIBERO conversions store *upright* frames, i.e. rotated by 180 degrees from the
simulator's render (robosuite's OpenGL convention, which :mod:`avbr.data.hdf5_demos` flips):

- ``lerobot_libero`` (LeRobot's ``HuggingFaceVLA/libero`` datasets; feature names from
  ``src/lerobot/envs/configs.py`` ``LiberoEnv.features_map``): cameras ``observation.images.image``
  (agentview) and ``observation.images.image2`` (wrist), ``observation.state`` 8-D (eef position 3,
  axis-angle 3, gripper qpos 2, as ``processor/env_processor.py`` ``LiberoProcessorStep`` builds it,
  and that step flips the simulator's images by 180 degrees to match the dataset), ``action`` 7-D.
- ``openpi_libero`` (openpi's ``physical-intelligence/libero``; ``examples/libero/
  convert_libero_data_to_lerobot.py``): ``image`` and ``wrist_image`` (``dtype: image``, 256 px,
  from OpenVLA's regenerated LIBERO RLDS, already rotated upright; openpi's ``examples/libero/main.py``
  rotates the simulator's frames by 180 degrees to match), ``state`` 8-D, ``actions`` 7-D.

So both store the ``flip_images=True`` view of :func:`avbr.envs.observations.policy_frames` (the
default of every avbr reader); ``flip_images=False`` rotates them back to the render's orientation,
the same frames :mod:`avbr.envs.demos` gives for an hdf5 file under that setting.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from avbr.cli import UserError
from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample
from avbr.data.gaps import GapSchedule
from avbr.envs.observations import policy_frames
from avbr.registry import Registry, UnknownNameError

__all__ = ["LeRobotKeys", "KEY_MAPS", "LeRobotSource", "FrameTimestampError", "MissingFeatureError", "VideoReader", "resolve_root"]

_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class LeRobotKeys:
    """Which features of a LeRobotDataset hold the cameras, the state and the action.

    Attributes:
        cameras: camera role (``"agentview"``, ``"wrist"``) -> feature key (``dtype`` video or image).
        state: proprioceptive state feature, ``float [D]``.
        action: action feature, ``float [A]``.
        task: per-frame column indexing the task table (LeRobot: ``task_index``).
    """

    cameras: dict[str, str] = field(default_factory=dict)
    state: str = "observation.state"
    action: str = "action"
    task: str = "task_index"


KEY_MAPS: Registry[LeRobotKeys] = Registry("LeRobot key map")
KEY_MAPS.register("lerobot_libero")(LeRobotKeys(
    cameras={"agentview": "observation.images.image", "wrist": "observation.images.image2"},
    state="observation.state", action="action"))
KEY_MAPS.register("openpi_libero")(LeRobotKeys(
    cameras={"agentview": "image", "wrist": "wrist_image"}, state="state", action="actions"))


class MissingFeatureError(UserError, KeyError):
    """The dataset lacks a feature the key map names (another key map is needed)."""


class FrameTimestampError(CorruptFileError):
    """No decoded frame lies within ``tolerance_s`` of a queried timestamp."""


def resolve_root(root: str | os.PathLike, revision: str | None = None) -> Path:
    """A local dataset folder, or a hub id (``org/name``) looked up in the Hugging Face hub cache.

    Nothing is downloaded: a hub id missing from the cache raises ``FileNotFoundError`` saying how
    to fetch it and pass the local folder instead.
    """
    path = Path(root).expanduser()
    if path.exists() or not _HUB_ID.match(str(root)):
        return path
    from huggingface_hub import snapshot_download  # noqa: PLC0415
    from huggingface_hub.errors import LocalEntryNotFoundError  # noqa: PLC0415

    try:
        return Path(snapshot_download(str(root), repo_type="dataset", revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as e:
        raise FileNotFoundError(
            f"LeRobot dataset {root!r} is neither a local folder nor in the Hugging Face hub cache ({e}); "
            f"download it where there is network (`huggingface-cli download --repo-type dataset {root} "
            f"--local-dir /data/{str(root).split('/')[-1]}`) and pass that folder as `root`"
        ) from e


@dataclass
class _Episode:
    """Where one episode lives: its data file and, per video feature, its mp4 and start time (s)."""

    index: int
    length: int
    data_file: str
    videos: dict[str, tuple[str, float]]


class VideoReader:
    """Frames of mp4 files by timestamp, with a small per-process cache of open containers.

    Args:
        tolerance_s: largest allowed distance (s) between a query and the nearest decoded frame.
        reseek_frames: a query more than this many frames past the previous one seeks again
            instead of decoding every frame in between. LeRobot encodes a keyframe every 2 frames
            (``configs/video.py``: ``g=2``), so a seek costs at most 2 decodes and beats decoding
            forward past 1 frame; for videos with long GOPs raise it.
        max_open: containers kept open (least recently used closed first).
    """

    def __init__(self, tolerance_s: float = 1e-4, reseek_frames: int = 1, max_open: int = 8) -> None:
        self.tolerance_s = tolerance_s
        self.reseek_frames = reseek_frames
        self.max_open = max_open
        # path -> (container, its video stream, time base in s, frame duration in s)
        self._open: OrderedDict[str, tuple[Any, Any, float, float]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        """Open containers stay in their process (DataLoader workers open their own)."""
        return {**self.__dict__, "_open": OrderedDict()}

    def _container(self, path: str) -> tuple[Any, Any, float, float]:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        try:
            container = av.open(path)
        except _DECODE_ERRORS as e:
            raise CorruptFileError(path, f"not a decodable video ({e})") from e
        if not container.streams.video:
            container.close()
            raise CorruptFileError(path, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # the DataLoader workers are the parallelism
        rate = stream.average_rate or stream.guessed_rate
        self._open[path] = (container, stream, float(stream.time_base), 1.0 / float(rate) if rate else 0.0)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1][0].close()
        return self._open[path]

    def read(self, path: str, timestamps: list[float]) -> list[np.ndarray]:
        """Frames nearest to ``timestamps`` (s, any order) as ``uint8 [H, W, 3]`` RGB.

        Raises:
            FrameTimestampError: a query has no decoded frame within ``tolerance_s``.
            CorruptFileError: the file cannot be decoded.
        """
        container, stream, tb, frame_s = self._container(path)
        reseek_s = (self.reseek_frames + 0.5) * frame_s  # half a frame of margin for float timestamps
        wanted = sorted(set(timestamps))
        groups: list[list[float]] = [[wanted[0]]]
        for q in wanted[1:]:
            if q - groups[-1][-1] > reseek_s:
                groups.append([q])
            else:
                groups[-1].append(q)
        found: dict[float, np.ndarray] = {}
        try:
            for group in groups:
                found.update(self._decode_group(container, stream, tb, group, path))
        except _DECODE_ERRORS as e:
            self._open.pop(path, None)
            container.close()
            raise CorruptFileError(path, f"decoding failed ({e})") from e
        return [found[q] for q in timestamps]

    def _decode_group(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                      tb: float, queries: list[float], path: str) -> dict[float, np.ndarray]:
        # Seek to the keyframe at or before the first query's tick, then decode forward until a
        # frame reaches the last query less the tolerance (frames are 1/fps >> tolerance apart,
        # so no later frame can be nearer). LeRobot seeks one tick earlier and stops at the query
        # itself; on a keyframe query that decodes a whole extra GOP, for the same frames.
        loaded = self._decode_until(container, stream, tb, queries, drain=True)
        if not self._within_tolerance(loaded, queries):
            # A frame ordered after a later packet (B-frame pyramids) was cut off by the drain:
            # decode that stretch again, feeding packets until the frames themselves arrive.
            loaded = self._decode_until(container, stream, tb, queries, drain=False)
        if not loaded:
            raise FrameTimestampError(path, f"no frame decoded in [{queries[0]}, {queries[-1]}] s")
        times = np.array([ts for ts, _ in loaded])
        out = {}
        for q in queries:
            i = int(np.argmin(np.abs(times - q)))
            if abs(times[i] - q) > self.tolerance_s:
                raise FrameTimestampError(
                    path, f"query timestamp {q:.6f} s is {abs(times[i] - q):.6f} s from the nearest decoded frame "
                    f"({times[i]:.6f} s), more than tolerance_s={self.tolerance_s}")
            out[q] = loaded[i][1].to_ndarray(format="rgb24")
        return out

    def _within_tolerance(self, loaded: list[tuple[float, Any]], queries: list[float]) -> bool:
        times = np.array([ts for ts, _ in loaded])
        return bool(len(times)) and all(np.abs(times - q).min() <= self.tolerance_s for q in queries)

    def _decode_until(self, container: Any, stream: Any, tb: float, queries: list[float],
                      drain: bool) -> list[tuple[float, Any]]:
        """``(time s, frame)`` from the keyframe at or before ``queries[0]`` up to ``queries[-1]``.

        With ``drain``, once the packet of the last query is in, the decoder's reordering delay
        (H.264 with B-frames holds a frame back) is emptied by draining instead of by decoding the
        next packet, often a keyframe; the next seek resets the decoder.
        """
        ctx = stream.codec_context
        ctx.flush_buffers()
        container.seek(max(round(queries[0] / tb), 0), backward=True, any_frame=False, stream=stream)
        last = queries[-1] - self.tolerance_s
        loaded: list[tuple[float, Any]] = []
        for packet in container.demux(stream):
            frames = list(ctx.decode(packet if packet.size else None))
            reached = drain and packet.pts is not None and packet.pts * tb >= last
            if reached:
                frames += ctx.decode(None)
            loaded += [(f.pts * tb, f) for f in frames if f.pts is not None]
            if reached or not packet.size or (loaded and loaded[-1][0] >= last):
                break
        return loaded

    def close(self) -> None:
        """Close every open container."""
        while self._open:
            self._open.popitem()[1][0].close()


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A scalar column as ``[N]`` or a (fixed-size) list column as ``[N, D]``."""
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        return np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), -1)
    return col.to_numpy(zero_copy_only=False)


@SOURCES.register("lerobot")
class LeRobotSource(FramePairSource):
    """A LeRobotDataset (codebase v2.0, v2.1 or v3.0; see the module docstring for the layouts).

    A sample carries ``action`` (``float32 [A]``, frame ``t``), ``actions`` (``[k, A]``, frames
    ``t .. t + k - 1``), ``state`` (``float32 [D]``, frame ``t``) and ``task`` = the task string
    of frame ``t``. The episode id is ``<data parquet path>:episode_<index:06d>``.

    Args:
        root: dataset folder (holding ``meta/info.json``) or a hub id found in the HF hub cache.
        gap: gap schedule (frames).
        keys: a ``KEY_MAPS`` name (``lerobot_libero``, ``openpi_libero``) or a :class:`LeRobotKeys`.
        camera: camera role in ``keys.cameras``.
        flip_images: the image convention (``SuiteConfig.flip_images``); the LIBERO conversions
            are stored in the ``True`` view.
        tolerance_s: video timestamp tolerance (s), LeRobot's default ``1e-4``.
        revision: hub revision when ``root`` is a hub id.
    """

    name = "lerobot"

    def __init__(self, root: str, gap: GapSchedule | None = None, keys: str | LeRobotKeys = "lerobot_libero",
                 camera: str = "agentview", flip_images: bool = True, tolerance_s: float = 1e-4,
                 revision: str | None = None) -> None:
        super().__init__(resolve_root(root, revision), gap)
        self.keys = KEY_MAPS.get(keys) if isinstance(keys, str) else keys
        if camera not in self.keys.cameras:
            raise UnknownNameError(f"camera {camera!r} not in the key map's cameras {sorted(self.keys.cameras)}")
        self.camera_key = self.keys.cameras[camera]
        self.flip_images = flip_images
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"no meta/info.json under {self.root}: not a LeRobotDataset folder; point at the "
                                    f"folder that holds meta/, data/ and videos/ (make_demos format=lerobot writes "
                                    f"<out>/<suite>/lerobot)")
        self.info = json.loads(info_path.read_text())
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in ("v2.0", "v2.1", "v3.0"):
            raise ValueError(f"{info_path}: codebase_version {self.version!r} is not supported (v2.0, v2.1, v3.0)")
        self.fps = float(self.info["fps"])
        features = self.info["features"]
        for role, key in (("camera", self.camera_key), ("state", self.keys.state), ("action", self.keys.action)):
            if key not in features:
                raise MissingFeatureError(
                    f"{info_path}: no {role} feature {key!r}; features present: {sorted(features)}. "
                    f"Pick another key map (known: {', '.join(KEY_MAPS.names())}) or pass a LeRobotKeys")
        self.camera_dtype = features[self.camera_key]["dtype"]
        if self.camera_dtype not in ("video", "image"):
            raise ValueError(f"camera feature {self.camera_key!r} has dtype {self.camera_dtype!r}, not video/image")
        self.episodes_meta = self._load_episodes()
        self.tasks = self._load_tasks()
        self.units = sorted({e.data_file for e in self.episodes_meta.values()})
        self._require_units("episodes")
        self._by_file: dict[str, list[EpisodeRef]] = {}
        for e in sorted(self.episodes_meta.values(), key=lambda e: e.index):
            self._by_file.setdefault(e.data_file, []).append(EpisodeRef(e.data_file, f"episode_{e.index:06d}"))
        self.video = VideoReader(tolerance_s=tolerance_s)
        self._tables: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._rows: dict[int, tuple[str, int]] = {}
        self._image_groups: OrderedDict[tuple[str, int], tuple[int, pa.Array]] = OrderedDict()

    # -- metadata ----------------------------------------------------------------------------
    def _load_episodes(self) -> dict[int, _Episode]:
        video_keys = [self.camera_key] if self.camera_dtype == "video" else []
        if self.version == "v3.0":
            return self._load_episodes_v30(video_keys)
        chunks = int(self.info.get("chunks_size", 1000))
        out = {}
        for row in _load_jsonl(self.root / "meta" / "episodes.jsonl"):
            i = int(row["episode_index"])
            fmt = {"episode_chunk": i // chunks, "episode_index": i}
            videos = {k: (str(self.root / self.info["video_path"].format(video_key=k, **fmt)), 0.0) for k in video_keys}
            out[i] = _Episode(i, int(row["length"]), str(self.root / self.info["data_path"].format(**fmt)), videos)
        return out

    def _load_episodes_v30(self, video_keys: list[str]) -> dict[int, _Episode]:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"LeRobotSource: no meta/episodes/chunk-*/file-*.parquet under {self.root}")
        columns = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for k in video_keys:
            columns += [f"videos/{k}/chunk_index", f"videos/{k}/file_index", f"videos/{k}/from_timestamp"]
        out = {}
        for path in files:
            try:
                cols = pq.read_table(path, columns=columns).to_pydict()
            except (pa.ArrowInvalid, KeyError, OSError) as e:
                raise CorruptFileError(path, f"not a LeRobot v3.0 episodes table ({e})") from e
            for r in range(len(cols["episode_index"])):
                i = int(cols["episode_index"][r])
                data = self.info["data_path"].format(chunk_index=cols["data/chunk_index"][r],
                                                     file_index=cols["data/file_index"][r])
                videos = {}
                for k in video_keys:
                    rel = self.info["video_path"].format(video_key=k, chunk_index=cols[f"videos/{k}/chunk_index"][r],
                                                         file_index=cols[f"videos/{k}/file_index"][r])
                    videos[k] = (str(self.root / rel), float(cols[f"videos/{k}/from_timestamp"][r]))
                out[i] = _Episode(i, int(cols["length"][r]), str(self.root / data), videos)
        return out

    def _load_tasks(self) -> dict[int, str]:
        if self.version != "v3.0":
            rows = _load_jsonl(self.root / "meta" / "tasks.jsonl")
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        table = pq.read_table(self.root / "meta" / "tasks.parquet")
        # pandas stores the named index ("task") as a column; an unnamed one as __index_level_0__.
        name = "task" if "task" in table.column_names else "__index_level_0__"
        return dict(zip((int(i) for i in table.column("task_index").to_pylist()),
                        (str(t) for t in table.column(name).to_pylist())))

    # -- data --------------------------------------------------------------------------------
    def _table(self, path: str) -> dict[str, np.ndarray]:
        """Per-frame columns of one data file (timestamps, indices, state, action), cached."""
        if path in self._tables:
            self._tables.move_to_end(path)
            return self._tables[path]
        names = ["episode_index", "frame_index", "timestamp", self.keys.task, self.keys.state, self.keys.action]
        try:
            table = pq.read_table(path, columns=names)
        except (pa.ArrowInvalid, KeyError, OSError) as e:
            raise CorruptFileError(path, f"not a readable LeRobot data parquet ({e})") from e
        cols = {n: _column(table, n) for n in names}
        self._tables[path] = cols
        while len(self._tables) > 4:
            self._tables.popitem(last=False)
        return cols

    def _episode(self, ref: EpisodeRef) -> tuple[_Episode, dict[str, np.ndarray], int]:
        """The episode's metadata, its file's columns and the row of its frame 0."""
        ep = self.episodes_meta[int(ref.key.removeprefix("episode_"))]
        cols = self._table(ep.data_file)
        if ep.index not in self._rows:
            rows = np.flatnonzero(cols["episode_index"] == ep.index)
            if len(rows) != ep.length or (len(rows) and rows[-1] - rows[0] + 1 != len(rows)):
                raise CorruptFileError(ep.data_file, f"episode {ep.index}: {len(rows)} contiguous rows expected "
                                                     f"{ep.length} (meta says length {ep.length})")
            frame_index = cols["frame_index"][rows]
            if not np.array_equal(frame_index, np.arange(ep.length)):
                raise CorruptFileError(ep.data_file, f"episode {ep.index}: frame_index is not 0..{ep.length - 1}")
            self._rows[ep.index] = (ep.data_file, int(rows[0]) if len(rows) else 0)
        return ep, cols, self._rows[ep.index][1]

    def _image_rows(self, path: str, rows: list[int]) -> list[np.ndarray]:
        """Decode ``dtype: image`` cells (``struct<bytes, path>``) at ``rows`` of a data file."""
        out = []
        pf = pq.ParquetFile(path)
        starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
        for r in rows:
            g = int(np.searchsorted(starts, r, side="right") - 1)
            if (path, g) not in self._image_groups:
                col = pf.read_row_group(g, columns=[self.camera_key]).column(self.camera_key).combine_chunks()
                self._image_groups[(path, g)] = (int(starts[g]), col.field("bytes"))
                while len(self._image_groups) > 2:
                    self._image_groups.popitem(last=False)
            start, cells = self._image_groups[(path, g)]
            try:
                with Image.open(BytesIO(cells[r - start].as_py())) as im:
                    out.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError) as e:
                raise CorruptFileError(path, f"row {r}: undecodable image cell ({e})") from e
        return out

    # -- FramePairSource ---------------------------------------------------------------------
    def episodes_in(self, unit: str) -> list[EpisodeRef]:
        return self._by_file.get(unit, [])

    def episode_length(self, ref: EpisodeRef) -> int:
        return self.episodes_meta[int(ref.key.removeprefix("episode_"))].length

    def frames(self, ref: EpisodeRef, ts: list[int]) -> list[np.ndarray]:
        """Frames ``ts`` (indices in the episode) of the configured camera, ``uint8 [H, W, 3]`` each."""
        ep, cols, row0 = self._episode(ref)
        if self.camera_dtype == "video":
            path, start = ep.videos[self.camera_key]
            stamps = [start + float(cols["timestamp"][row0 + t]) for t in ts]
            out = self.video.read(path, stamps)
        else:
            out = self._image_rows(ep.data_file, [row0 + t for t in ts])
        # stored = policy_frames(render, True) = render[::-1, ::-1]; the rotation is its own inverse
        return [policy_frames(f[::-1, ::-1], self.flip_images) for f in out]

    def episode_arrays(self, ref: EpisodeRef) -> tuple[np.ndarray, np.ndarray, str]:
        """``(state float32 [T, D], action float32 [T, A], task)`` of a whole episode (task: frame 0's)."""
        ep, cols, row0 = self._episode(ref)
        rows = slice(row0, row0 + ep.length)
        task = self.tasks.get(int(cols[self.keys.task][row0]), "") if ep.length else ""
        return (np.asarray(cols[self.keys.state][rows], dtype=np.float32),
                np.asarray(cols[self.keys.action][rows], dtype=np.float32), task)

    def episode_columns(self, names: list[str]) -> dict[int, dict[str, Any]]:
        """Extra per-episode metadata (v3.0: ``meta/episodes`` columns; v2.x: ``episodes.jsonl``
        keys): ``episode_index -> {name: value}`` for the ``names`` present (absent ones are left out)."""
        if self.version != "v3.0":
            return {int(r["episode_index"]): {n: r[n] for n in names if n in r}
                    for r in _load_jsonl(self.root / "meta" / "episodes.jsonl")}
        out: dict[int, dict[str, Any]] = {}
        for path in sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
            present = [n for n in names if n in pq.read_schema(path).names]
            cols = pq.read_table(path, columns=["episode_index", *present]).to_pydict()
            for r, i in enumerate(cols["episode_index"]):
                out[int(i)] = {n: cols[n][r] for n in present}
        return out

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        ep, cols, row0 = self._episode(ref)
        prev, curr = self.frames(ref, [t, t + k])
        rows = slice(row0 + t, row0 + t + max(k, 1))
        actions = np.asarray(cols[self.keys.action][rows], dtype=np.float32)
        task = self.tasks.get(int(cols[self.keys.task][row0 + t]), "")
        return self._pair(ref, prev, curr, t, k, task=task, action=actions[0], actions=actions,
                          state=np.asarray(cols[self.keys.state][row0 + t], dtype=np.float32))
