"""Video decoding (PyAV) and the generic video-folder source.

Decoding library: **PyAV** (``av``), the Python binding of FFmpeg's libavformat/libavcodec. It
decodes in-process (no ffmpeg subprocess per reader, unlike imageio-ffmpeg, which matters inside
DataLoader workers), reads mp4 (H.264/H.265/AV1) and webm/mkv (VP8/VP9/AV1) alike, seeks to the
keyframe before a timestamp so a pair deep in a long EgoDex video costs one GOP of decoding, and
reports damaged input as ``av.error.FFmpegError`` exceptions that we turn into ``CorruptFileError``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from avbr.data.base import (
    SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample, list_files, short_side_shape,
)
from avbr.data.gaps import GapSchedule

__all__ = ["VIDEO_SUFFIXES", "SCALE_FLAGS", "count_frames", "read_frames", "VideoReader", "VideoFolderSource"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError, ZeroDivisionError)
# swscale bilinear with accurate rounding and full horizontal chroma interpolation: without the two
# flags the 4:2:0 chroma is scaled coarsely (max error 31 levels against full decode + PIL resize at
# 1080p -> 224; with them 7, mean 1.3), at half the cost of plain bilinear.
SCALE_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise CorruptFileError(path, "no video stream")
    return container.streams.video[0]


@dataclass
class _OpenVideo:
    """One open file: its container, first video stream, timing and a scaler that keeps its context."""

    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    fps: Fraction
    time_base: Fraction
    start: int  # pts of the stream's first frame
    scaler: VideoReformatter


class VideoReader:
    """Decodes frames by index, at full or reduced resolution, keeping recently used files open.

    One reader lives in each process (DataLoader workers get their own copy with nothing open:
    open containers do not cross process boundaries). A read seeks once, to the keyframe at or
    before the earliest index, and decodes forward to the last one: for a pair ``(t, t + k)``
    with ``k <= 10`` (the gap schedule) that is one seek per pair. Files stay open in a bounded
    least-recently-used cache, so further pairs of a file skip the open and the header parse.
    Packets before and between the wanted frames are decoded with ``skip_frame = NONREF``: frames
    no other frame references (most B-frames) are not reconstructed, which changes no output
    pixel (the wanted frames and every reference are decoded in full) and cut the CPU time of a
    1080p x264 pair by 1.1-1.35x in our runs (``bench video``).

    Reduced resolution: with ``short_side``, FFmpeg's scaler (swscale, bilinear, the filter widened
    with the downscale factor like PIL's antialiased bilinear; ``SCALE_FLAGS``) converts the decoded YUV frame
    straight to RGB at :func:`~avbr.data.base.short_side_shape` (aspect kept, the same rounding as
    :func:`~avbr.data.mixture.resize_center_crop`, which then only crops). This skips the
    full-resolution RGB conversion and the full-resolution PIL resize; the H.264/HEVC decode itself
    always runs at the stored resolution (FFmpeg has no reduced-resolution decode for them), which
    is why pre-resized files (``avbr.data.resize_videos``) are the large win.

    Args:
        max_open: files kept open (each holds a decoder with its reference frames:
            about 20 frames of the stored resolution, ~60 MB at 1080p).
        threads: decoder threads per file; ``1`` (default) when DataLoader workers already use
            every core, ``0`` for FFmpeg's choice (frame + slice threading, ``thread_type AUTO``).
            Frame threading delays each output frame by the thread count, so a short
            seek-and-decode does extra work: it helps one worker's latency, not pairs per core
            (``bench video`` measures both).
    """

    def __init__(self, max_open: int = 4, threads: int = 1) -> None:
        if max_open < 1 or threads < 0:
            raise ValueError(f"need max_open >= 1 and threads >= 0, got {max_open}, {threads}")
        self.max_open = max_open
        self.threads = threads
        self._open: OrderedDict[str, _OpenVideo] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": OrderedDict()}

    def _get(self, path: str) -> _OpenVideo:
        if self._pid != os.getpid():  # a forked worker: the parent's files (and file offsets) stay the parent's
            self._open, self._pid = OrderedDict(), os.getpid()
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        container = av.open(path)
        try:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
            if not rate or stream.time_base is None:
                raise CorruptFileError(path, "video stream has no frame rate")
            if self.threads != 1:
                stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
        except BaseException:
            container.close()
            raise
        video = _OpenVideo(container, stream, Fraction(rate), Fraction(stream.time_base), stream.start_time or 0,
                           VideoReformatter())
        self._open[path] = video
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].container.close()
        return video

    def num_frames(self, path: str) -> int:
        """Frames of the first video stream: the container header, else a packet count (no decoding).

        Raises:
            CorruptFileError: the file cannot be opened or has no video stream.
        """
        try:
            v = self._get(path)
            if v.stream.frames > 0:
                return int(v.stream.frames)
            # webm/mkv headers carry no frame count: count the packets; the next read seeks anyway.
            return sum(1 for p in v.container.demux(v.stream) if p.size > 0)
        except _DECODE_ERRORS as e:
            self._drop(path)
            raise CorruptFileError(path, f"not a decodable video ({e})") from e

    def _drop(self, path: str) -> None:
        video = self._open.pop(path, None)
        if video is not None:
            video.container.close()

    def read(self, path: str, indices: list[int], short_side: int | None = None) -> list[np.ndarray]:
        """The frames at ``indices`` (0-based, any order) as ``uint8 [H, W, 3]`` RGB.

        ``H, W`` are the stored size, or ``short_side_shape(H, W, short_side)`` when
        ``short_side`` is given and smaller than the shorter stored side (never upscaled). A
        frame's index is its presentation time times the stream's average rate.

        Raises:
            CorruptFileError: the file cannot be decoded or ends before an index.
        """
        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        try:
            v = self._get(path)
            ctx = v.stream.codec_context
            scale_down = short_side is not None and short_side < min(ctx.height, ctx.width)
            shape = short_side_shape(ctx.height, ctx.width, short_side) if scale_down else None
            target = v.start + int(Fraction(wanted[0]) / v.fps / v.time_base)
            v.container.seek(target, stream=v.stream, backward=True, any_frame=False)  # also flushes the decoder
            for packet in v.container.demux(v.stream):
                pidx = None if packet.pts is None else self._index(v, packet.pts)
                if self.threads == 1:  # frame threads take their settings per thread: only single-threaded
                    ctx.skip_frame = "DEFAULT" if pidx is None or pidx in wanted else "NONREF"
                past = False  # frames leave the decoder in presentation order: none wanted after this one
                for frame in ctx.decode(packet):
                    idx = None if frame.pts is None else self._index(v, frame.pts)
                    if idx in wanted:
                        found[idx] = self._rgb(v.scaler, frame, shape)
                    past = past or (idx is not None and idx > wanted[-1])
                if past or len(found) == len(wanted) or not packet.size:  # empty packet: end of stream, flushed
                    break
            ctx.skip_frame = "DEFAULT"
        except _DECODE_ERRORS as e:
            self._drop(path)
            raise CorruptFileError(path, f"decoding failed ({e})") from e
        except CorruptFileError:
            self._drop(path)
            raise
        missing = [i for i in wanted if i not in found]
        if missing:
            self._drop(path)
            raise CorruptFileError(path, f"video ends before frame(s) {missing}")
        return [found[i] for i in indices]

    @staticmethod
    def _index(v: _OpenVideo, pts: int) -> int:
        """Frame index of a presentation time stamp: time times the average rate."""
        return round((pts - v.start) * v.time_base * v.fps)

    @staticmethod
    def _rgb(scaler: VideoReformatter, frame: av.VideoFrame, shape: tuple[int, int] | None) -> np.ndarray:
        """``uint8 [H, W, 3]``: one swscale pass (colour conversion and, with ``shape``, scaling)."""
        h, w = shape if shape is not None else (frame.height, frame.width)
        if (h, w) == (frame.height, frame.width):
            return frame.to_ndarray(format="rgb24")
        return scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation=SCALE_FLAGS,
                               threads=1).to_ndarray()

    def close(self) -> None:
        """Close every open file."""
        while self._open:
            self._open.popitem()[1].container.close()


def count_frames(path: str) -> int:
    """:meth:`VideoReader.num_frames` on a reader of its own, closed afterwards."""
    reader = VideoReader(max_open=1)
    try:
        return reader.num_frames(path)
    finally:
        reader.close()


def read_frames(path: str, indices: list[int], short_side: int | None = None) -> list[np.ndarray]:
    """:meth:`VideoReader.read` on a reader of its own, closed afterwards (one-off reads)."""
    reader = VideoReader(max_open=1)
    try:
        return reader.read(path, indices, short_side)
    finally:
        reader.close()


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
        max_open_files: files each process keeps open (:class:`VideoReader`).
        decode_threads: decoder threads per file (:class:`VideoReader`; 1 = the workers are the
            parallelism, 0 = FFmpeg's choice).

    Frames are scaled at decode time to the mixture's output size (see
    :meth:`FramePairSource.set_decode_short_side`).
    """

    name = "video_folder"

    def __init__(self, root: str, gap: GapSchedule | None = None, frame_stride: int = 1, max_open_files: int = 4,
                 decode_threads: int = 1) -> None:
        super().__init__(root, gap)
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.frame_stride = frame_stride
        self.reader = VideoReader(max_open_files, decode_threads)
        self.units = list_files(self.root, VIDEO_SUFFIXES)
        self._require_units(f"video files ({', '.join(VIDEO_SUFFIXES)})")
        self._frames: dict[str, int] = {}  # per-process cache of frame counts (filled in workers)

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref.path not in self._frames:
            self._frames[ref.path] = self.reader.num_frames(ref.path)
        return (self._frames[ref.path] - 1) // self.frame_stride + 1

    def task(self, ref: EpisodeRef) -> str:
        rel = os.path.relpath(os.path.dirname(ref.path), self.root)
        return "" if rel == "." else rel

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        s = self.frame_stride
        prev, curr = self.reader.read(ref.path, [t * s, (t + k) * s], self.decode_short_side)
        return self._pair(ref, prev, curr, t, k, task=self.task(ref))
