"""The encoder family: stream ViT, two-stream encoder, fusion, video decoder, baselines.

Build anything through the registry: ``build_model(name, **config_fields)``; see ``list_models()``
and ``python -m avbr.models --summary`` for parameters and GFLOPs of every model and preset.
"""

from avbr.models.checkpoint import load_encoder, save_encoder
from avbr.models.config import StreamEncoderConfig, TwoStreamConfig
from avbr.models.decoder import DecoderConfig, VideoDecoder
from avbr.models.output import EncoderOutput
from avbr.models.predictor import VideoPredictor
from avbr.models.registry import ENCODER_NAMES, MODELS, build_model, list_models

__all__ = [
    "EncoderOutput",
    "StreamEncoderConfig",
    "TwoStreamConfig",
    "DecoderConfig",
    "VideoDecoder",
    "VideoPredictor",
    "MODELS",
    "ENCODER_NAMES",
    "build_model",
    "list_models",
    "save_encoder",
    "load_encoder",
]
