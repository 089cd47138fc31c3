"""Video decoding (PyAV) and the generic video-folder source.

Decoding library: **PyAV** (``av``), the Python binding of FFmpeg's libavformat/libavcodec. It
decodes in-process (no ffmpeg subprocess per reader, unlike imageio-ffmpeg, which matters inside
DataLoader workers), reads mp4 (H.264/H.265/AV1) and webm/mkv (VP8/VP9/AV1) alike, seeks to the
keyframe before a timestamp so a pair deep in a long EgoDex video costs one GOP of decoding, and
reports damaged input as ``av.error.FFmpegError`` exceptions that we turn into ``CorruptFileError``.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample, list_files
from avbr.data.gaps import GapSchedule

__all__ = ["VIDEO_SUFFIXES", "count_frames", "read_frames", "VideoFolderSource"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError, ZeroDivisionError)


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise CorruptFileError(path, "no video stream")
    return container.streams.video[0]


def count_frames(path: str) -> int:
    """Number of frames of the first video stream (container header, else a packet count)."""
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            if stream.frames > 0:
                return int(stream.frames)
            # webm/mkv headers carry no frame count: count the packets (no decoding).
            return sum(1 for p in container.demux(stream) if p.size > 0)
    except _DECODE_ERRORS as e:
        raise CorruptFileError(path, f"not a decodable video ({e})") from e


def read_frames(path: str, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (0-based, any order) as ``uint8 [H, W, 3]`` RGB.

    Seeks to the keyframe at or before the earliest index, then decodes forward; a frame's index
    is its presentation time times the stream's average rate. Raises ``CorruptFileError`` when the
    file cannot be decoded or ends before an index.
    """
    wanted = sorted(set(indices))
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
            if not rate or stream.time_base is None:
                raise CorruptFileError(path, "video stream has no frame rate")
            fps, tb = Fraction(rate), Fraction(stream.time_base)
            start = stream.start_time or 0
            target = start + int(Fraction(wanted[0]) / fps / tb)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                idx = round((frame.pts - start) * tb * fps)
                if idx in wanted:
                    found[idx] = frame.to_ndarray(format="rgb24")
                if idx >= wanted[-1]:
                    break
    except _DECODE_ERRORS as e:
        raise CorruptFileError(path, f"decoding failed ({e})") from e
    missing = [i for i in wanted if i not in found]
    if missing:
        raise CorruptFileError(path, f"video ends before frame(s) {missing}")
    return [found[i] for i in indices]


@SOURCES.register("video_folder")
class VideoFolderSource(FramePairSource):
    """A folder of video files, one episode per file.

    On disk: ``*.mp4``, ``*.webm``, ``*.mkv``, ``*.mov``, ``*.avi`` under ``root`` (recursive), any
    resolution and frame rate, first video stream used. The task is the name of the file's folder
    relative to ``root`` (``""`` for files directly in ``root``): ``root/<task>/<clip>.mp4``, as in
    Something-Something-style class folders. No actions.

    Args:
        root: folder of videos.
        gap: gap schedule (in frames of the stored video).
        frame_stride: read every ``frame_stride``-th frame, so that gap ``k`` spans
            ``k * frame_stride`` stored frames (use it to bring a 60 fps corpus to 30 fps).
    """

    name = "video_folder"

    def __init__(self, root: str, gap: GapSchedule | None = None, frame_stride: int = 1) -> None:
        super().__init__(root, gap)
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.frame_stride = frame_stride
        self.units = list_files(self.root, VIDEO_SUFFIXES)
        self._require_units(f"video files ({', '.join(VIDEO_SUFFIXES)})")
        self._frames: dict[str, int] = {}  # per-process cache of frame counts (filled in workers)

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref.path not in self._frames:
            self._frames[ref.path] = count_frames(ref.path)
        return (self._frames[ref.path] - 1) // self.frame_stride + 1

    def task(self, ref: EpisodeRef) -> str:
        rel = os.path.relpath(os.path.dirname(ref.path), self.root)
        return "" if rel == "." else rel

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        s = self.frame_stride
        prev, curr = read_frames(ref.path, [t * s, (t + k) * s])
        return self._pair(ref, prev, curr, t, k, task=self.task(ref))
