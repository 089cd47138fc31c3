"""Future prediction: reconstruct ``img_{t+k}`` from ``(img_t, img_{t+k})`` (seeds 000/001)."""

from __future__ import annotations

import torch
from torch import nn

from avbr.models import build_model
from avbr.objectives.base import OBJECTIVES, NoOptions, Objective, ObjectiveSpec, masked_mean

__all__ = ["FuturePrediction"]


@OBJECTIVES.register("future_prediction")
class FuturePrediction(Objective):
    """Encoder + video decoder trained to predict the later frame of a pair.

    The encoder sees ``(img_t, img_{t+k})`` (the M stream their difference, the P stream one
    frame) and the decoder must rebuild ``img_{t+k}`` from the encoder's patches, stage CLS and the
    ``img_t`` skip, so the change has to pass through the encoder's representation.

    With ``k ~ P(k) = s^(k-1) / sum_{j=1..K} s^(j-1)`` on ``1..K`` (drawn by the data sampler,
    see ``avbr.data.gaps``) the loss of a batch is

        L = (1/B) sum_b w(k_b) * mean_{c,h,w} (pred_b - img_{t+k,b})^2
        w(k) = l^(k-1) / Z,  Z = sum_{j=1..K} P(j) l^(j-1)   (E_P[w] = 1)
        w(still) = still_weight (default 1)

    with ``K = max_gap``, ``s = sample_decay``, ``l = loss_decay`` (seed 001: 10, 0.8, 0.5). A still
    image enters as the pair ``(img, img)``: ``M = 0`` and the target is the image itself.

    Args:
        spec: ``encoder`` registry name (``two_stream``, ``single_stream``, ...),
            ``encoder_kwargs`` / ``decoder_kwargs`` (``avbr.models`` config fields) and ``gap``
            (the gap schedule: its weights).
        cfg: no options of its own.
    """

    name = "future_prediction"
    Config = NoOptions

    def __init__(self, spec: ObjectiveSpec, cfg: NoOptions) -> None:
        super().__init__()
        self.model = build_model(
            "video_predictor", encoder=spec.encoder, encoder_kwargs=spec.encoder_kwargs, decoder_kwargs=spec.decoder_kwargs
        )
        self.img_size = self.model.encoder.img_size
        self.gap = spec.gap
        self.register_buffer("gap_weights", spec.gap.weight_table(), persistent=False)  # [K + 1]

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(
        self,
        prev: torch.Tensor,
        curr: torch.Tensor,
        gap: torch.Tensor,
        is_still: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        pred, _ = self.model(prev, curr)  # [B, 3, H, W]
        err = (pred.float() - curr.float()).pow(2).mean(dim=(1, 2, 3))  # [B]
        w = self.gap_weights[gap.clamp(0, self.gap.max_gap)]  # [B]
        loss = (err * w).mean()
        return {
            "loss": loss,
            "mse_video": masked_mean(err.detach(), ~is_still),
            "mse_still": masked_mean(err.detach(), is_still),
        }
