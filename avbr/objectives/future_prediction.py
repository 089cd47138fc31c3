"""Future prediction (seeds 000/001): an encoder + video decoder predict a frame of the clip.

Two targets (``objective.params.target``, registered in ``TARGETS``):

- ``seed``: the seeds' formulation. The encoder sees ``(img_t, img_{t+k})`` and the decoder
  predicts ``img_{t+k}``, with the ``img_t`` skip. The target is an *input*: with ``p_frame=curr``
  the P stream holds its RGB, with ``prev`` it is exactly ``P + dRGB`` (M), so a P-only encoder
  solves it about as well as a two-stream one (issue 15: held-out MSE 0.0042 vs 0.0040). It is
  reconstruction through the decoder's bottleneck (the fused patch grid and the stage CLS), not
  prediction; kept for the seed001 experiments and for comparison.
- ``extrapolate``: the encoder sees ``(img_{t-k}, img_t)`` and the decoder predicts ``img_{t+k}``,
  with the skip from ``img_t`` (the newest frame the encoder saw, never the target). The target
  is not an input: the motion needed to predict it is only in M, so a P-only encoder cannot solve
  it (``tests/objectives/test_targets.py`` measures the gap). Needs frame triples
  ``(t, t + k, t + 2k)`` from the data (``frames_per_sample = 3``).

Both use the same gap sampling and weights. With ``k ~ P(k) = s^(k-1) / sum_{j=1..K} s^(j-1)`` on
``1..K`` (drawn by the data sampler, see ``avbr.data.gaps``; for triples truncated to
``2k <= L - 1``) the loss of a batch is

    L = (1/B) sum_b w(k_b) * mean_{c,h,w} (pred_b - target_b)^2
    w(k) = l^(k-1) / Z,  Z = sum_{j=1..K} P(j) l^(j-1)   (E_P[w] = 1)
    w(still) = still_weight (default 1)

with ``K = max_gap``, ``s = sample_decay``, ``l = loss_decay`` (seed 001: 10, 0.8, 0.5). A still
image enters as ``(img, img)`` with target ``img`` under both targets: ``M = 0``, and a scene that
does not move stays where it is.

The default is ``extrapolate``: on procedural shapes with known motion (64 px, tiny, depth 3,
1500 steps of 16, lr 1e-3; held-out episodes; ``test_extrapolation_needs_the_motion_stream``) a
P-only encoder is as good as the two-stream one under ``seed`` (held-out MSE 0.00135 vs 0.00179)
and 40% worse under ``extrapolate`` (0.01547 vs 0.01107), so only ``extrapolate`` measures what
the motion stream adds. The seed001 experiment configs pin ``target: seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from avbr.models import build_model
from avbr.objectives.base import OBJECTIVES, Objective, ObjectiveSpec, masked_mean

__all__ = ["FuturePrediction", "FuturePredictionOptions", "PredictionTarget", "TARGETS"]

Frames = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class PredictionTarget:
    """What the encoder, the decoder's skip and the loss see for one target.

    Attributes:
        frames_per_sample: 2 (pairs ``(t, t + k)``) or 3 (triples ``(t, t + k, t + 2k)``).
        split: ``(prev, curr, future | None) -> (encoder prev, encoder curr, skip, target)``,
            each ``[B, 3, H, W]``.
    """

    frames_per_sample: int
    split: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], Frames]


def _seed(prev: torch.Tensor, curr: torch.Tensor, future: torch.Tensor | None) -> Frames:
    # pair (img_t, img_{t+k}): encode both, skip from img_t, predict img_{t+k}
    return prev, curr, prev, curr


def _extrapolate(prev: torch.Tensor, curr: torch.Tensor, future: torch.Tensor | None) -> Frames:
    # triple (img_{t-k}, img_t, img_{t+k}): encode the first two, skip from img_t, predict the third
    if future is None:
        raise ValueError("target 'extrapolate' needs frame triples: build the data with frames=3 (frames_per_sample)")
    return prev, curr, curr, future


TARGETS: dict[str, PredictionTarget] = {
    "seed": PredictionTarget(2, _seed),
    "extrapolate": PredictionTarget(3, _extrapolate),
}


@dataclass
class FuturePredictionOptions:
    """Future-prediction options.

    Attributes:
        target: ``extrapolate`` (predict ``img_{t+k}`` from ``(img_{t-k}, img_t)``; the default)
            | ``seed`` (reconstruct ``img_{t+k}`` from ``(img_t, img_{t+k})``, the seeds'
            formulation). See the module docstring.
    """

    target: str = "extrapolate"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"future_prediction target must be one of {list(TARGETS)}, got {self.target!r}")


@OBJECTIVES.register("future_prediction")
class FuturePrediction(Objective):
    """Encoder + video decoder trained to predict a frame (see the module docstring).

    Args:
        spec: ``encoder`` registry name (``two_stream``, ``single_stream``, ...),
            ``encoder_kwargs`` / ``decoder_kwargs`` (``avbr.models`` config fields) and ``gap``
            (the gap schedule: its weights).
        cfg: ``FuturePredictionOptions``.
    """

    name = "future_prediction"
    Config = FuturePredictionOptions

    def __init__(self, spec: ObjectiveSpec, cfg: FuturePredictionOptions) -> None:
        super().__init__()
        self.cfg = cfg
        self.target = TARGETS[cfg.target]
        self.frames_per_sample = self.target.frames_per_sample
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
        future: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        enc_prev, enc_curr, skip, target = self.target.split(prev, curr, future)  # [B, 3, H, W] each
        pred, _ = self.model(enc_prev, enc_curr, skip)  # [B, 3, H, W]
        err = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))  # [B]
        w = self.gap_weights[gap.clamp(0, self.gap.max_gap)]  # [B]
        loss = (err * w).mean()
        return {
            "loss": loss,
            "mse_video": masked_mean(err.detach(), ~is_still),
            "mse_still": masked_mean(err.detach(), is_still),
        }
