"""EgoDex: egocentric human manipulation video with hand-pose annotations."""

from __future__ import annotations

import os

import h5py

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample, list_files
from avbr.data.gaps import GapSchedule
from avbr.data.video import VideoReader

__all__ = ["EgoDexSource"]

_DESCRIPTION_ATTRS = ("llm_description", "llm_description2", "which_llm_description")


def _text(value: object) -> str:
    """An hdf5 string attribute (``str``, ``bytes`` or ``numpy.bytes_``) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


@SOURCES.register("egodex")
class EgoDexSource(FramePairSource):
    """EgoDex episodes: an mp4 and an hdf5 of annotations per episode.

    On disk (``root`` = one part, e.g. ``part1/``, or the folder of all parts; searched recursively)::

        <task_name>/<i>.mp4     1080p 30 fps egocentric RGB video, T frames
        <task_name>/<i>.hdf5    per-frame annotations of the same episode:
                                  transforms/<joint>   float [T, 4, 4] (camera, hands, fingers)
                                  confidences/<joint>  float [T]
                                  camera/intrinsic     float [3, 3]
                                  attrs: llm_description        language description of the episode
                                         llm_description2       reversible tasks: the description
                                                                of the other direction
                                         which_llm_description  "1" or "2": which of the two this
                                                                episode performs
                                         llm_type               "reversible" for those tasks

    (attribute layout of the EgoDex release, apple/ml-egodex; e.g. ``add_remove_lid`` episodes are
    "add the lid" or "remove the lid" and say which through ``which_llm_description``.)

    An episode is an mp4 with a same-named hdf5 beside it (mp4s without one are not listed).
    ``task`` is the hdf5's active description (``llm_description2`` when
    ``which_llm_description`` is ``"2"``, else ``llm_description``), or the folder name when the
    file has no description. The
    hdf5 is opened for every sample (it is small) so a truncated annotation file is detected and
    skipped like a corrupt video. EgoDex has no robot actions, so samples carry none.

    Args:
        root: EgoDex folder.
        gap: gap schedule (in frames at ``30 / frame_stride`` fps).
        frame_stride: read every ``frame_stride``-th frame.
        max_open_files: mp4s each process keeps open (:class:`avbr.data.video.VideoReader`).
        decode_threads: decoder threads per file (1 = the workers are the parallelism, 0 = FFmpeg's choice).

    Frames are scaled at decode time to the mixture's output size (see
    :meth:`FramePairSource.set_decode_short_side`); for a corpus read many times, a pre-resized
    copy (``python -m avbr.data.resize_videos``, which copies the hdf5s too) decodes far faster.
    """

    name = "egodex"

    def __init__(self, root: str, gap: GapSchedule | None = None, frame_stride: int = 1, max_open_files: int = 4,
                 decode_threads: int = 1) -> None:
        super().__init__(root, gap)
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.frame_stride = frame_stride
        self.reader = VideoReader(max_open_files, decode_threads)
        self.units = [p for p in list_files(self.root, {".mp4"}) if os.path.exists(self._hdf5(p))]
        self._require_units("<task>/<i>.mp4 + <task>/<i>.hdf5 episode pairs")
        self._frames: dict[str, int] = {}  # per-process cache of frame counts (filled in workers)

    @staticmethod
    def _hdf5(mp4: str) -> str:
        return os.path.splitext(mp4)[0] + ".hdf5"

    def task(self, ref: EpisodeRef) -> str:
        """The episode's active description (see the class docstring) or its folder name.

        Raises:
            CorruptFileError: the hdf5 cannot be read, or says ``which_llm_description = "2"``
                without an ``llm_description2``.
        """
        path = self._hdf5(ref.path)
        try:
            with h5py.File(path, "r") as f:
                attrs = {k: _text(f.attrs[k]) for k in _DESCRIPTION_ATTRS if k in f.attrs}
        except (OSError, ValueError, KeyError) as e:
            raise CorruptFileError(path, f"not a readable hdf5 file ({e})") from e
        key = "llm_description2" if attrs.get("which_llm_description", "1").strip() == "2" else "llm_description"
        if key in attrs:
            return attrs[key]
        if key == "llm_description2":
            raise CorruptFileError(path, "which_llm_description is '2' but the file has no llm_description2")
        return os.path.basename(os.path.dirname(ref.path))

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref.path not in self._frames:
            self._frames[ref.path] = self.reader.num_frames(ref.path)
        return (self._frames[ref.path] - 1) // self.frame_stride + 1

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        task = self.task(ref)
        s = self.frame_stride
        prev, curr = self.reader.read(ref.path, [t * s, (t + k) * s], self.decode_short_side)
        return self._pair(ref, prev, curr, t, k, task=task)
