"""The two-stream M/P encoder.

One ``StreamViT`` per stream: M (4 channels of temporal change) and P (5 channels of structure and
colour), see ``avbr.preprocess``. The blocks are split into ``num_stages`` stages (blocks 4/8/12 at
depth 12).

CLS exchange (``mode="interleaved"``), at the end of every stage, both updates computed from the
pre-exchange tokens::

    cls_m <- cls_m + W_pm LN(cls_p)
    cls_p <- cls_p + W_mp LN(cls_m)

A residual, normalised, linear message: each stream keeps its own CLS and reads a learned summary
of the other's, patch tokens are untouched, so everything the P stream learns about motion has to
pass through its CLS and then reach its patches by attention in the next stage. The projections
start with the usual ViT init (std 0.02), not zero, so that the streams are coupled from the first
step. ``mode="separate"`` skips the exchange: the "no exchange" ablation.

After the last stage each stream is layer-normed; the fused outputs are the pixel-wise fusion of
the patch tokens and the CLS fusion of the CLS pair (``avbr.models.fusion``).
"""

from __future__ import annotations

import torch
from torch import nn

from avbr.models.config import TwoStreamConfig
from avbr.models.fusion import build_cls_fusion, build_pixel_fusion
from avbr.models.output import EncoderOutput
from avbr.preprocess import M_CHANNELS, P_CHANNELS, mp_channels

__all__ = ["CLSExchange", "TwoStreamEncoder"]


class CLSExchange(nn.Module):
    """Symmetric residual message between two CLS tokens ``[B, D]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_m = nn.LayerNorm(dim, eps=1e-6)
        self.norm_p = nn.LayerNorm(dim, eps=1e-6)
        self.p_to_m = nn.Linear(dim, dim)
        self.m_to_p = nn.Linear(dim, dim)
        for proj in (self.p_to_m, self.m_to_p):
            nn.init.trunc_normal_(proj.weight, std=0.02)
            nn.init.zeros_(proj.bias)

    def forward(self, cls_m: torch.Tensor, cls_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cls_m + self.p_to_m(self.norm_p(cls_p)), cls_p + self.m_to_p(self.norm_m(cls_m))


class TwoStreamEncoder(nn.Module):
    """M and P ViTs with optional CLS exchange, pixel-wise and CLS fusion.

    Args:
        cfg: ``TwoStreamConfig``.
    """

    registry_name = "two_stream"
    frames_needed = 2

    def __init__(self, cfg: TwoStreamConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.vit.embed_dim
        self.m_vit = cfg.build_stream(M_CHANNELS)
        self.p_vit = cfg.build_stream(P_CHANNELS)
        self.exchanges = nn.ModuleList(
            CLSExchange(dim) for _ in cfg.stage_ends if cfg.mode == "interleaved"
        )
        self.pixel_fusion = build_pixel_fusion(cfg.pixel_fusion, dim)
        self.cls_fusion = None if self.pixel_fusion.shares_cls else build_cls_fusion(cfg.cls_fusion, dim)
        self.embed_dim = dim
        self.img_size = cfg.img_size
        self.patch_size = cfg.patch_size
        self.grid = self.p_vit.grid

    def forward(self, prev: torch.Tensor | None, curr: torch.Tensor) -> EncoderOutput:
        """Encode a batch of frame pairs.

        Args:
            prev: ``[B, 3, H, W]`` earlier frames in ``[0, 1]``, or ``None`` for still images.
            curr: ``[B, 3, H, W]`` later frames in ``[0, 1]``; ``H = W = img_size``.

        Returns:
            ``EncoderOutput`` with ``cls [B, D]``, ``patches [B, N, D]``, ``stream_cls`` and
            ``stream_patches`` for ``"m"`` and ``"p"``, and the P-CLS after each stage.
        """
        m_in, p_in = mp_channels(prev, curr, self.cfg.p_frame)  # [B, 4, H, W], [B, 5, H, W]
        m_tok = self.m_vit.embed(m_in)  # [B, 1 + N, D]
        p_tok = self.p_vit.embed(p_in)  # [B, 1 + N, D]
        stage_cls = []
        start = 0
        for i, stop in enumerate(self.cfg.stage_ends):
            m_tok = self.m_vit.run_blocks(m_tok, start, stop)
            p_tok = self.p_vit.run_blocks(p_tok, start, stop)
            if self.exchanges:
                cls_m, cls_p = self.exchanges[i](m_tok[:, 0], p_tok[:, 0])
                m_tok = torch.cat([cls_m.unsqueeze(1), m_tok[:, 1:]], dim=1)
                p_tok = torch.cat([cls_p.unsqueeze(1), p_tok[:, 1:]], dim=1)
            stage_cls.append(self.p_vit.norm(p_tok[:, 0]))
            start = stop
        m_tok = self.m_vit.norm(m_tok)
        p_tok = self.p_vit.norm(p_tok)
        cls_m, patches_m = m_tok[:, 0], m_tok[:, 1:]
        cls_p, patches_p = p_tok[:, 0], p_tok[:, 1:]
        fuse_cls = self.pixel_fusion if self.cls_fusion is None else self.cls_fusion
        return EncoderOutput(
            cls=fuse_cls(cls_m, cls_p),
            patches=self.pixel_fusion(patches_m, patches_p),
            grid=self.grid,
            stream_cls={"m": cls_m, "p": cls_p},
            stream_patches={"m": patches_m, "p": patches_p},
            stage_cls=stage_cls,
        )
