"""Dataclass configs of the encoder family (the fields ``build_model(name, **fields)`` takes)."""

from __future__ import annotations

from dataclasses import dataclass

from avbr.models.fusion import CLS_FUSIONS, PIXEL_FUSIONS
from avbr.models.vit import PRESETS, StreamViT, ViTPreset, resolve_preset

__all__ = ["StreamEncoderConfig", "TwoStreamConfig"]


@dataclass
class StreamEncoderConfig:
    """Fields shared by every encoder.

    Attributes:
        preset: stream size, ``tiny`` (D=192) | ``small`` (D=384) | ``base`` (D=768), depth 12.
        img_size: input resolution in pixels (square); 224 and 128 are the tested sizes.
        patch_size: patch side in pixels; the video decoder needs a power of two.
        depth: overrides the preset's depth (blocks per stream); must be a multiple of ``num_stages``.
        num_stages: stages of the encoder; the CLS exchange and the decoder's CLS injection
            happen at their boundaries (3 stages = blocks 4/8/12 at depth 12).
        p_frame: frame the P channels come from, ``curr`` | ``prev`` (see ``avbr.preprocess``).
        drop_path_rate: stochastic depth of the last block.
    """

    preset: str = "small"
    img_size: int = 224
    patch_size: int = 16
    depth: int | None = None
    num_stages: int = 3
    p_frame: str = "curr"
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, got {self.preset!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be divisible by patch_size {self.patch_size}")
        if self.vit.depth % self.num_stages:
            raise ValueError(f"depth {self.vit.depth} must be a multiple of num_stages {self.num_stages}")
        if self.p_frame not in ("curr", "prev"):
            raise ValueError(f"p_frame must be 'curr' or 'prev', got {self.p_frame!r}")

    @property
    def vit(self) -> ViTPreset:
        return resolve_preset(self.preset, self.depth)

    def build_stream(self, in_chans: int) -> StreamViT:
        """A ``StreamViT`` of this config's size over ``in_chans`` input channels."""
        vit = self.vit
        return StreamViT(
            in_chans=in_chans,
            img_size=self.img_size,
            patch_size=self.patch_size,
            embed_dim=vit.embed_dim,
            depth=vit.depth,
            num_heads=vit.num_heads,
            mlp_ratio=vit.mlp_ratio,
            drop_path_rate=self.drop_path_rate,
        )

    @property
    def stage_ends(self) -> list[int]:
        """Block index after which each stage ends, e.g. ``[4, 8, 12]``."""
        per_stage = self.vit.depth // self.num_stages
        return [per_stage * (i + 1) for i in range(self.num_stages)]


@dataclass
class TwoStreamConfig(StreamEncoderConfig):
    """Two-stream encoder.

    Attributes:
        mode: ``interleaved`` (CLS exchange at every stage boundary) | ``separate`` (the streams
            never talk: the "no exchange" ablation).
        pixel_fusion: ``separate`` | ``shared`` | ``mlp`` (see ``avbr.models.fusion``).
        cls_fusion: ``linear`` | ``mlp`` | ``cross_attention`` | ``gating``; must be ``linear``
            when ``pixel_fusion`` is ``shared`` (the shared map fuses the CLS pair too).
    """

    mode: str = "interleaved"
    pixel_fusion: str = "separate"
    cls_fusion: str = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ("interleaved", "separate"):
            raise ValueError(f"mode must be 'interleaved' or 'separate', got {self.mode!r}")
        PIXEL_FUSIONS.get(self.pixel_fusion)
        CLS_FUSIONS.get(self.cls_fusion)
        if self.pixel_fusion == "shared" and self.cls_fusion != "linear":
            raise ValueError("pixel_fusion='shared' fuses the CLS pair with the shared linear map; set cls_fusion='linear'")
