"""Single-ViT baselines and ablations of the two-stream encoder.

Each is one ``StreamViT`` of the same preset as *one* stream of the two-stream encoder (so about
half its parameters and FLOPs; compare with a larger preset for a compute-matched baseline). They
differ only in what the ViT sees (``INPUTS``):

- ``single_stream``: M and P stacked, 9 channels;
- ``early_fusion``: the raw frame pair ``[prev RGB; curr RGB]``, 6 channels (a still image is
  the pair ``(curr, curr)``);
- ``m_only``: M alone, 4 channels (the P-only ablation's counterpart);
- ``p_only``: P alone, 5 channels (sees one frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from avbr.models.config import StreamEncoderConfig
from avbr.models.output import EncoderOutput
from avbr.preprocess import M_CHANNELS, P_CHANNELS, m_channels, mp_channels, p_channels, to_float_frames
from avbr.registry import UnknownNameError

__all__ = ["StreamInput", "INPUTS", "SingleViTEncoder"]


@dataclass(frozen=True)
class StreamInput:
    """How a single-ViT baseline builds its input from ``(prev, curr)``.

    Attributes:
        stream: name of the stream in ``EncoderOutput.stream_cls``.
        in_chans: channels of the built input.
        frames_needed: 2 if the input depends on ``prev``.
        build: ``(prev | None, curr, p_frame) -> [B, in_chans, H, W]``.
    """

    stream: str
    in_chans: int
    frames_needed: int
    build: Callable[[torch.Tensor | None, torch.Tensor, str], torch.Tensor]


def _stacked_mp(prev: torch.Tensor | None, curr: torch.Tensor, p_frame: str) -> torch.Tensor:
    return torch.cat(mp_channels(prev, curr, p_frame), dim=1)  # [B, 9, H, W]


def _raw_pair(prev: torch.Tensor | None, curr: torch.Tensor, p_frame: str) -> torch.Tensor:
    curr = to_float_frames(curr)
    prev = curr if prev is None else to_float_frames(prev)
    return torch.cat([prev, curr], dim=1)  # [B, 6, H, W]


def _m_only(prev: torch.Tensor | None, curr: torch.Tensor, p_frame: str) -> torch.Tensor:
    return m_channels(prev, curr)


def _p_only(prev: torch.Tensor | None, curr: torch.Tensor, p_frame: str) -> torch.Tensor:
    return p_channels(prev if (p_frame == "prev" and prev is not None) else curr)


INPUTS: dict[str, StreamInput] = {
    "single_stream": StreamInput("mp", M_CHANNELS + P_CHANNELS, 2, _stacked_mp),
    "early_fusion": StreamInput("rgb_pair", 6, 2, _raw_pair),
    "m_only": StreamInput("m", M_CHANNELS, 2, _m_only),
    "p_only": StreamInput("p", P_CHANNELS, 1, _p_only),
}


class SingleViTEncoder(nn.Module):
    """One ViT over the input named ``kind`` (a key of ``INPUTS``).

    Args:
        kind: ``single_stream | early_fusion | m_only | p_only``.
        cfg: ``StreamEncoderConfig``.
    """

    def __init__(self, kind: str, cfg: StreamEncoderConfig) -> None:
        super().__init__()
        if kind not in INPUTS:
            raise UnknownNameError(f"unknown single-ViT input {kind!r}; valid: {', '.join(INPUTS)}")
        self.registry_name = kind
        self.cfg = cfg
        self.input = INPUTS[kind]
        self.vit = cfg.build_stream(self.input.in_chans)
        self.frames_needed = self.input.frames_needed
        self.embed_dim = cfg.vit.embed_dim
        self.img_size = cfg.img_size
        self.patch_size = cfg.patch_size
        self.grid = self.vit.grid

    def forward(self, prev: torch.Tensor | None, curr: torch.Tensor) -> EncoderOutput:
        """Encode a batch of frame pairs.

        Args:
            prev: ``[B, 3, H, W]`` in ``[0, 1]`` or ``None`` (still image).
            curr: ``[B, 3, H, W]`` in ``[0, 1]``.

        Returns:
            ``EncoderOutput`` whose ``cls``/``patches`` are the ViT's final CLS/patch tokens and
            whose ``stage_cls`` holds the CLS after each stage.
        """
        tokens = self.vit.embed(self.input.build(prev, curr, self.cfg.p_frame))  # [B, 1 + N, D]
        stage_cls = []
        start = 0
        for stop in self.cfg.stage_ends:
            tokens = self.vit.run_blocks(tokens, start, stop)
            stage_cls.append(self.vit.norm(tokens[:, 0]))
            start = stop
        tokens = self.vit.norm(tokens)
        cls, patches = tokens[:, 0], tokens[:, 1:]
        name = self.input.stream
        return EncoderOutput(
            cls=cls,
            patches=patches,
            grid=self.grid,
            stream_cls={name: cls},
            stream_patches={name: patches},
            stage_cls=stage_cls,
        )
