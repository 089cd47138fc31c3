"""Readouts: from :class:`Features` to what a probe or policy head consumes.

Registry names (``build_readout(name, example_features)``):

==========  =========  ======================================================================
name        output     meaning
==========  =========  ======================================================================
cls         [B, D]     the encoder's global embedding (``Features.cls``)
mean        [B, D]     mean of the patch tokens
patches     [B, D]     learned attention pooling over the patch tokens (one learned query)
pixelwise   [B, 1+N, D] ``[cls; patches]`` of an encoder whose patches already fuse M and P
                        at every location (our two-stream pixel-wise fusion, or a single ViT over
                        stacked channels). Foreign encoders have one stream and no fusion: it is
                        rejected for them (use ``patches``, or ``frames: both`` with ``agg_c``).
agg_a       [B, 2SD]   (A) avg + late: ``concat_s [cls_s, mean(patches_s)]``, no parameters
agg_b       [B, D]     (B) avg + early: a learned ``Linear(2SD -> D)`` on (A)
agg_c       [B, 1+N, D] (C) pixel-wise: the encoder's own fused ``[cls; patches]`` when it has
                        one, else a learned ``Linear(SD -> D)`` applied per token to the
                        stream-concatenated ``[cls_s; patches_s]``
agg_d       [B, S(1+N), D] (D) all patches + late: every stream's ``[cls_s; patches_s]``
                        concatenated along the tokens, no parameters
==========  =========  ======================================================================

A-D follow seed 002 ("Pixel-wise Channel Fusion", ablation axis 1) and need two or more
streams: ``Features.stream_cls/stream_patches`` (``{"m", "p"}`` for two-stream encoders, taken
from ``EncoderOutput.stream_cls/stream_patches``; ``{"prev", "curr"}`` for a one-frame encoder
with ``frames: both``). ``S`` = number of streams, ``D`` = per-stream width.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

from avbr.registry import Registry

from .base import Features

__all__ = ["Readout", "AttentionPool", "READOUTS", "build_readout", "list_readouts"]

READOUTS: Registry[Callable[..., "Readout"]] = Registry("readout")


class Readout(nn.Module):
    """Base class. ``kind`` is ``"vector"`` (``[B, out_dim]``) or ``"tokens"`` (``[B, N', out_dim]``)."""

    kind: Literal["vector", "tokens"] = "vector"
    out_dim: int
    learned: bool = False

    def forward(self, f: Features) -> torch.Tensor:
        raise NotImplementedError


class AttentionPool(nn.Module):
    """One learned query attending over tokens: ``[B, N, D]`` -> ``[B, D]``.

    Args:
        dim: token width ``D``.
        num_heads: attention heads; must divide ``dim`` (falls back to 1 head when it does not).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        heads = num_heads if dim % num_heads == 0 else 1
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, N, D]`` -> ``[B, D]``."""
        out, _ = self.attn(self.query.expand(tokens.shape[0], -1, -1), tokens, tokens)  # [B, 1, D]
        return out[:, 0]


def _streams(f: Features, name: str) -> list[str]:
    keys = list(f.stream_cls)
    if len(keys) < 2:
        raise ValueError(
            f"readout {name!r} aggregates two or more streams, but these features have {keys or 'none'}. "
            "Two-stream encoders give streams m and p; for a one-frame encoder set encoder.frames=both "
            "(streams prev and curr). Use 'cls', 'mean' or 'patches' otherwise."
        )
    return keys


def _stream_tokens(f: Features, k: str) -> torch.Tensor:
    return torch.cat([f.stream_cls[k][:, None], f.stream_patches[k]], dim=1)  # [B, 1 + N, Ds]


class _Cls(Readout):
    def __init__(self, f: Features) -> None:
        super().__init__()
        self.out_dim = f.cls.shape[-1]

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, D]``."""
        return f.cls


class _Mean(Readout):
    def __init__(self, f: Features) -> None:
        super().__init__()
        self.out_dim = f.patches.shape[-1]

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, D]``."""
        return f.patches.mean(1)


class _Patches(Readout):
    learned = True

    def __init__(self, f: Features, num_heads: int = 8) -> None:
        super().__init__()
        self.out_dim = f.patches.shape[-1]
        self.pool = AttentionPool(self.out_dim, num_heads)

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, D]``."""
        return self.pool(f.patches)


class _Pixelwise(Readout):
    kind = "tokens"

    def __init__(self, f: Features) -> None:
        super().__init__()
        if not f.pixelwise_fused:
            raise ValueError(
                "readout 'pixelwise' is the two-stream encoder's own per-location M/P fusion; these features "
                "come from an encoder without it (one stream, e.g. DINOv2/CLIP/R3M). Use 'patches' "
                "(attention pooling) or set encoder.frames=both and use 'agg_c' (a learned per-location "
                "fusion of prev and curr)."
            )
        self.out_dim = f.patches.shape[-1]

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, 1 + N, D]``."""
        return torch.cat([f.cls[:, None], f.patches], dim=1)


class _AggA(Readout):
    def __init__(self, f: Features) -> None:
        super().__init__()
        self.keys = _streams(f, "agg_a")
        self.out_dim = sum(2 * f.stream_cls[k].shape[-1] for k in self.keys)

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, 2 S Ds]``: ``[cls_m, mean(patches_m), cls_p, mean(patches_p)]``."""
        return torch.cat([t for k in self.keys for t in (f.stream_cls[k], f.stream_patches[k].mean(1))], dim=-1)


class _AggB(Readout):
    learned = True

    def __init__(self, f: Features) -> None:
        super().__init__()
        self.avg = _AggA(f)
        self.out_dim = f.stream_cls[self.avg.keys[0]].shape[-1]
        self.fc = nn.Linear(self.avg.out_dim, self.out_dim)

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, Ds]``."""
        return self.fc(self.avg(f))


class _AggC(Readout):
    kind = "tokens"

    def __init__(self, f: Features) -> None:
        super().__init__()
        self.own = f.pixelwise_fused
        if self.own:
            self.out_dim = f.patches.shape[-1]
            return
        self.keys = _streams(f, "agg_c")
        self.out_dim = f.stream_cls[self.keys[0]].shape[-1]
        self.fc = nn.Linear(sum(f.stream_cls[k].shape[-1] for k in self.keys), self.out_dim)
        self.learned = True

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, 1 + N, D]``."""
        if self.own:
            return torch.cat([f.cls[:, None], f.patches], dim=1)
        return self.fc(torch.cat([_stream_tokens(f, k) for k in self.keys], dim=-1))  # [B,1+N,S*Ds] -> [B,1+N,D]


class _AggD(Readout):
    kind = "tokens"

    def __init__(self, f: Features) -> None:
        super().__init__()
        self.keys = _streams(f, "agg_d")
        widths = {f.stream_cls[k].shape[-1] for k in self.keys}
        if len(widths) != 1:
            raise ValueError(f"agg_d concatenates tokens, so every stream needs one width; got {sorted(widths)}")
        self.out_dim = widths.pop()

    def forward(self, f: Features) -> torch.Tensor:
        """-> ``[B, S (1 + N), Ds]``."""
        return torch.cat([_stream_tokens(f, k) for k in self.keys], dim=1)


for _name, _cls in [("cls", _Cls), ("mean", _Mean), ("patches", _Patches), ("pixelwise", _Pixelwise),
                    ("agg_a", _AggA), ("agg_b", _AggB), ("agg_c", _AggC), ("agg_d", _AggD)]:
    READOUTS.register(_name)(_cls)


def build_readout(name: str, example: Features, **kwargs) -> Readout:
    """The readout ``name`` sized for features shaped like ``example`` (one encoded batch).

    Raises ``KeyError`` listing the names for an unknown ``name``, ``ValueError`` when the features
    cannot support it (e.g. ``pixelwise`` on a foreign encoder).
    """
    return READOUTS.get(name)(example, **kwargs)


def list_readouts() -> list[str]:
    """Sorted readout names."""
    return READOUTS.names()
