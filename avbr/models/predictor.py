"""Encoder + video decoder: the future-prediction model of the pretraining objective."""

from __future__ import annotations

import torch
from torch import nn

from avbr.models.decoder import VideoDecoder
from avbr.models.output import EncoderOutput

__all__ = ["VideoPredictor"]


class VideoPredictor(nn.Module):
    """Predicts a frame from an encoded frame pair through an encoder and a ``VideoDecoder``.

    Only ``encoder`` is exported after pretraining (``avbr.models.save_encoder``), so every
    parameter of it has to reach the loss. The decoder's CLS conditioning is therefore the
    encoder's stage CLS with the *last* entry replaced by the encoder's fused ``cls``: levels
    below the top get the intermediate P-CLS of stages ``1 .. S-1`` as in seed 000, and the top
    level (and every level of decoder ablation ``C``) gets the fused CLS, the embedding that the
    ``cls`` readout exports. The fused CLS is a function of the final P-CLS and the final M-CLS,
    so the CLS fusion and the last stage's CLS exchange are trained by the loss instead of being
    exported at their random initial values. For single-ViT encoders ``cls`` is the final CLS
    itself, so nothing changes for them.

    Args:
        encoder: any encoder of the family (``forward(prev, curr) -> EncoderOutput``).
        decoder: ``VideoDecoder`` sized for the encoder.
    """

    def __init__(self, encoder: nn.Module, decoder: VideoDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(
        self, prev: torch.Tensor | None, curr: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, EncoderOutput]:
        """Encode ``(prev, curr)`` and decode a frame.

        Args:
            prev: ``[B, 3, H, W]`` earlier frames of the encoder's pair in ``[0, 1]`` (``None``:
                still images).
            curr: ``[B, 3, H, W]`` later frames of the encoder's pair in ``[0, 1]``.
            skip: ``[B, 3, H, W]`` the frame ``img_t`` the decoder's skip connection sees; the
                objective chooses it so that it is never the target. Default: ``prev`` (``curr``
                for stills), seed 000's ``img_t`` when the pair is ``(img_t, img_{t+k})``.

        Returns:
            ``(pred [B, 3, H, W] in [0, 1], EncoderOutput)``.
        """
        out = self.encoder(prev, curr)
        if skip is None:
            skip = curr if prev is None else prev
        conditions = [*out.stage_cls[:-1], out.cls]  # [B, D] per stage; the top one is the fused CLS
        return self.decoder(out.patches, out.grid, skip, conditions), out
