"""Pretraining objectives, registered by name in ``OBJECTIVES``: ``future_prediction``,
``videomae``, ``dino_temporal``. Build with ``build_objective``; see ``avbr.objectives.base``."""

from avbr.objectives.base import OBJECTIVES, Objective, build_objective, frames_to_float
from avbr.objectives.dino_temporal import DinoTemporal, DinoTemporalOptions
from avbr.objectives.future_prediction import FuturePrediction
from avbr.objectives.videomae import VideoMAE, VideoMAEOptions, tube_mask

__all__ = [
    "OBJECTIVES", "Objective", "build_objective", "frames_to_float",
    "FuturePrediction", "VideoMAE", "VideoMAEOptions", "tube_mask", "DinoTemporal", "DinoTemporalOptions",
]
