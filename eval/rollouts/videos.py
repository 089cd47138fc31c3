"""Rollout videos: MP4 at the control rate, outcome in the file name.

Frames are the upright agentview observations the policy saw (``uint8 [T, H, W, 3]``), one per
policy step, so playback at ``fps = control_freq`` (20 Hz for LIBERO and robosuite) is real time.

Encoded in-process with PyAV (the FFmpeg libraries inside the ``av`` wheel, already a dependency
for decoding pretraining videos), not imageio: without its separate ``imageio-ffmpeg`` plugin,
imageio silently picks its TIFF writer for ``.mp4`` and fails on the first ``fps=`` argument,
after the rollouts have run. The codec is the first of :data:`CODECS` this FFmpeg build can
encode: H.264 (``libx264``) where present, else MPEG-4 Part 2 (``mpeg4``, which FFmpeg always
builds in; fewer browsers play it, so falling back warns). Both encode ``yuv420p``, whose chroma
planes are half the width and height, so odd sides are padded to even by repeating the last
row/column (a 33 x 35 frame is stored 34 x 36).

:func:`check_video_writer` encodes and decodes a two-frame clip: run it at start-up,
before any simulation, so that a broken video setup fails in seconds, naming what is missing.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

#: Encoders in order of preference (FFmpeg encoder names).
CODECS = ("libx264", "mpeg4")
#: Encoder options (FFmpeg's names): x264 constant quality (``crf``: 0 lossless, 23 x264's default,
#: 18 near-transparent); MPEG-4's rate control (libavcodec's default target, 200 kb/s, from its
#: ``options_table.h``) may not quantise coarser than ``qmax`` (1 best .. 31 worst).
_OPTIONS = {"libx264": {"crf": "18"}, "mpeg4": {"qmax": "4"}}


class VideoWriterUnavailableError(RuntimeError):
    """No working MP4 encoder: the message names the missing piece and how to get it."""


@functools.cache
def video_codec() -> str:
    """The encoder used for rollout videos: the first of :data:`CODECS` that PyAV's FFmpeg has.

    Raises:
        VideoWriterUnavailableError: PyAV is not installed, or its FFmpeg has none of :data:`CODECS`.
    """
    try:
        import av  # noqa: PLC0415 - only runs that write videos need it
    except ImportError as exc:
        raise VideoWriterUnavailableError(
            "rollout videos are written with PyAV, which is not installed: `pip install av` "
            "(a dependency of avbr), or set videos_per_task=0 to run without videos") from exc
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        if name != CODECS[0]:
            warnings.warn(f"PyAV's FFmpeg has no {CODECS[0]} (H.264) encoder: rollout videos are MPEG-4 Part 2 "
                          f"({name}), which some browsers do not play. A PyAV wheel from PyPI has {CODECS[0]}.",
                          stacklevel=2)
        return name
    raise VideoWriterUnavailableError(
        f"PyAV {av.__version__}'s FFmpeg can encode none of {', '.join(CODECS)}: install a PyAV wheel from PyPI "
        f"(`pip install --force-reinstall av`; it bundles both), or set videos_per_task=0 to run without videos")


def video_name(task_id: int, episode: int, seed: int, success: bool) -> str:
    """``task03_ep007_seed0_success.mp4`` / ``..._failure.mp4``."""
    return f"task{task_id:02d}_ep{episode:03d}_seed{seed}_{'success' if success else 'failure'}.mp4"


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` -> ``[T, H + H % 2, W + W % 2, 3]``, edge rows/columns repeated."""
    h, w = frames.shape[1:3]
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode(frames: np.ndarray, path: Path, fps: int) -> None:
    """Encode ``uint8 [T, H, W, 3]`` (even ``H``, ``W``) as an MP4 file."""
    import av  # noqa: PLC0415

    codec = video_codec()
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:  # index first: browsers play while loading
        stream = container.add_stream(codec, rate=Fraction(fps), options=_OPTIONS[codec])
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames


def write_video(frames: np.ndarray, path: str | Path, fps: int) -> Path:
    """Write ``uint8 [T, H, W, 3]`` frames to an MP4 at ``fps`` frames per second.

    The file appears only once complete (written to ``<name>.part.mp4``, then renamed). Odd
    ``H``/``W`` are padded to even (see the module docstring).

    Raises:
        ValueError: frames are not ``uint8 [T, H, W, 3]`` with ``T >= 1``, or ``fps < 1``.
        VideoWriterUnavailableError: see :func:`video_codec`.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"video frames must be uint8 [T>=1, H, W, 3], got {frames.dtype} {frames.shape}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    _encode(_pad_even(frames), tmp, fps)
    tmp.replace(path)
    return path


def check_video_writer() -> str:
    """Encode a two-frame 16 x 16 clip to a temporary file and decode it back; returns the codec name.

    Raises:
        VideoWriterUnavailableError: no encoder (see :func:`video_codec`), or the round trip failed.
    """
    codec = video_codec()  # first: it names a missing PyAV
    import av  # noqa: PLC0415

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[1] = 255
    try:
        with tempfile.TemporaryDirectory(prefix="avbr-video-check-") as tmp:
            path = Path(tmp) / "check.mp4"
            _encode(frames, path, fps=20)
            with av.open(str(path)) as container:
                decoded = sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoWriterUnavailableError(
            f"PyAV {av.__version__} could not write a test MP4 with {codec} ({type(exc).__name__}: {exc}); "
            "reinstall PyAV (`pip install --force-reinstall av`) or set videos_per_task=0") from exc
    if decoded != len(frames):
        raise VideoWriterUnavailableError(
            f"PyAV {av.__version__}'s {codec} test MP4 decoded to {decoded} frames, not {len(frames)}; "
            "reinstall PyAV (`pip install --force-reinstall av`) or set videos_per_task=0")
    return codec
