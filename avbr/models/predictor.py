"""Encoder + video decoder: the future-prediction model of the pretraining objective."""

from __future__ import annotations

import torch
from torch import nn

from avbr.models.decoder import VideoDecoder
from avbr.models.output import EncoderOutput

__all__ = ["VideoPredictor"]


class VideoPredictor(nn.Module):
    """Predicts ``img_{t+k}`` from ``(img_t, img_{t+k})`` through an encoder and a ``VideoDecoder``.

    Only ``encoder`` is exported after pretraining (``avbr.models.save_encoder``).

    Args:
        encoder: any encoder of the family (``forward(prev, curr) -> EncoderOutput``).
        decoder: ``VideoDecoder`` sized for the encoder.
    """

    def __init__(self, encoder: nn.Module, decoder: VideoDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, img_t: torch.Tensor | None, img_tk: torch.Tensor) -> tuple[torch.Tensor, EncoderOutput]:
        """Predict the later frame.

        Args:
            img_t: ``[B, 3, H, W]`` earlier frames in ``[0, 1]`` (``None``: still images, then the
                decoder's skip uses ``img_tk``).
            img_tk: ``[B, 3, H, W]`` later frames in ``[0, 1]``.

        Returns:
            ``(pred [B, 3, H, W] in [0, 1], EncoderOutput)``.
        """
        out = self.encoder(img_t, img_tk)
        skip = img_tk if img_t is None else img_t
        return self.decoder(out.patches, out.grid, skip, out.stage_cls), out
