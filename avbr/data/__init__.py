"""Frame-pair data for pretraining: sources (one class per on-disk format), the mixture, the sampler.

Sources are registered by name in ``SOURCES``: ``hdf5_demos`` (LIBERO / robomimic), ``bridge``
(Bridge V2 raw), ``bridge_rlds`` (Bridge V2 RLDS/TFDS), ``lerobot`` (LeRobotDataset v2.x/v3.0),
``egodex``, ``video_folder``, ``image_folder``, ``procedural`` and ``procedural_stills`` (smoke
tests). See ``avbr.data.base`` for the sample dict.
"""

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample
from avbr.data.bridge import BridgeSource
from avbr.data.bridge_rlds import BridgeRLDSSource
from avbr.data.egodex import EgoDexSource
from avbr.data.gaps import GapSchedule
from avbr.data.hdf5_demos import HDF5DemoSource
from avbr.data.image_folder import ImageFolderSource
from avbr.data.lerobot import LeRobotSource
from avbr.data.mixture import PairMixture, StreamSampler, collate_pairs, resize_center_crop
from avbr.data.procedural import ProceduralStillSource, ProceduralVideoSource
from avbr.data.video import VideoFolderSource, VideoReader, count_frames, read_frames

__all__ = [
    "SOURCES", "CorruptFileError", "EpisodeRef", "FramePairSource", "PairSample", "GapSchedule",
    "HDF5DemoSource", "BridgeSource", "BridgeRLDSSource", "LeRobotSource", "EgoDexSource",
    "VideoFolderSource", "ImageFolderSource",
    "ProceduralVideoSource", "ProceduralStillSource", "PairMixture", "StreamSampler",
    "collate_pairs", "resize_center_crop", "count_frames", "read_frames", "VideoReader", "build_source",
]


def build_source(name: str, root: str = "", gap: GapSchedule | None = None, **kwargs) -> FramePairSource:
    """Build the registered source ``name``; an unknown name lists the valid ones."""
    return SOURCES.get(name)(root, gap=gap, **kwargs)
