"""Still images: the static part of the video + still mixture."""

from __future__ import annotations

import os

from avbr.data.base import SOURCES, EpisodeRef, FramePairSource, PairSample, list_files
from avbr.data.bridge import read_image
from avbr.data.gaps import GapSchedule

__all__ = ["IMAGE_SUFFIXES", "ImageFolderSource"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@SOURCES.register("image_folder")
class ImageFolderSource(FramePairSource):
    """A folder of still images (ImageNet-style or flat).

    On disk: ``*.jpg``, ``*.jpeg``, ``*.png``, ``*.webp``, ``*.bmp`` under ``root`` (recursive);
    any size, converted to RGB. ``task`` is the image's folder relative to ``root`` (the class
    folder of an ImageNet-style tree). Samples have ``prev`` = ``curr`` (the same pixels, so
    ``M = 0``), ``gap`` 0 and ``is_still`` True.

    Args:
        root: folder of images.
        gap: unused (stills have no gap); accepted so every source builds the same way.
    """

    name = "image_folder"
    is_still = True

    def __init__(self, root: str, gap: GapSchedule | None = None) -> None:
        super().__init__(root, gap)
        self.units = list_files(self.root, IMAGE_SUFFIXES)
        self._require_units(f"images ({', '.join(IMAGE_SUFFIXES)})")

    def episode_length(self, ref: EpisodeRef) -> int:
        return 1

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        img = read_image(ref.path)
        rel = os.path.relpath(os.path.dirname(ref.path), self.root)
        return self._pair(ref, img, img, 0, 0, task="" if rel == "." else rel)
