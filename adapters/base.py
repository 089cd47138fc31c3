"""The one interface every encoder adapter implements, and the helpers they share.

Data flow (ARCHITECTURE.md): uint8 HWC RGB frames ``[B, H, W, 3]`` (numpy or torch) go into
:meth:`EncoderAdapter.encode`, which resizes and normalises them as the encoder's
:class:`InputContract` says, runs the model and returns :class:`Features`. Normalisation happens
here and nowhere else.

Letters: ``B`` batch, ``T`` frames, ``C, H, W`` channels/height/width, ``N`` tokens, ``D`` width.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import resize as resize_image

from avbr.cli import ConfigError, UserError

__all__ = [
    "Features",
    "InputContract",
    "EncoderAdapter",
    "StrictLoadError",
    "load_strict",
    "state_dict_hash",
    "to_frames",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

# ImageNet channel statistics, as torchvision's reference training scripts and R3M's `normlayer`
# (facebookresearch/r3m, r3m/models/models_r3m.py) and DINOv2's `IMAGENET_DEFAULT_MEAN`
# (facebookresearch/dinov2, dinov2/data/transforms.py) use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Features:
    """What :meth:`EncoderAdapter.encode` returns for a batch of frame pairs.

    Attributes:
        cls: ``[B, D]`` the encoder's global embedding (which token or pooling is the adapter's
            documented choice: see each adapter's module docstring).
        patches: ``[B, N, D]`` one token per spatial location, row-major over ``grid``.
        grid: ``(h, w)`` with ``N = h * w``.
        stream_cls: per-stream global embeddings, ``{name: [B, Ds]}``. Two-stream encoders give
            ``{"m", "p"}``; ``frames="both"`` gives ``{"prev", "curr"}``; one-stream encoders give
            at most one entry. The aggregation readouts A-D need two or more streams.
        stream_patches: per-stream patch tokens, same keys, ``[B, N, Ds]`` each.
        pixelwise_fused: True when ``patches`` already combine both channels (M and P, or both
            frames) at every location inside the encoder (our two-stream pixel-wise fusion, or a
            single ViT over stacked M+P / stacked frames); the ``pixelwise`` readout needs it.
    """

    cls: torch.Tensor
    patches: torch.Tensor
    grid: tuple[int, int]
    stream_cls: dict[str, torch.Tensor] = field(default_factory=dict)
    stream_patches: dict[str, torch.Tensor] = field(default_factory=dict)
    pixelwise_fused: bool = False

    def __post_init__(self) -> None:
        b, n, d = self.patches.shape
        if self.cls.shape != (b, d):
            raise ValueError(f"cls {tuple(self.cls.shape)} does not match patches {tuple(self.patches.shape)}")
        if self.grid[0] * self.grid[1] != n:
            raise ValueError(f"grid {self.grid} does not hold the {n} patch tokens")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Features:
        """A copy with every tensor moved/cast (``dtype`` applies to floating tensors)."""

        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Features(
            cls=mv(self.cls),
            patches=mv(self.patches),
            grid=self.grid,
            stream_cls={k: mv(v) for k, v in self.stream_cls.items()},
            stream_patches={k: mv(v) for k, v in self.stream_patches.items()},
            pixelwise_fused=self.pixelwise_fused,
        )

    def split(self, size: int) -> list[Features]:
        """Chunks of ``size`` samples along ``B`` (inverse of batching several inputs together)."""
        def chunks(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return t.split(size)

        n = len(chunks(self.cls))
        return [
            Features(
                cls=chunks(self.cls)[i],
                patches=chunks(self.patches)[i],
                grid=self.grid,
                stream_cls={k: chunks(v)[i] for k, v in self.stream_cls.items()},
                stream_patches={k: chunks(v)[i] for k, v in self.stream_patches.items()},
                pixelwise_fused=self.pixelwise_fused,
            )
            for i in range(n)
        ]

    @staticmethod
    def concat_frames(prev: Features, curr: Features) -> Features:
        """``frames="both"``: features of prev and curr concatenated on ``D`` (``D`` doubles).

        ``cls [B, 2D]``, ``patches [B, N, 2D]``; the two frames become the streams
        ``{"prev", "curr"}`` so that the aggregation readouts A-D apply to them.
        """
        return Features(
            cls=torch.cat([prev.cls, curr.cls], dim=-1),
            patches=torch.cat([prev.patches, curr.patches], dim=-1),
            grid=curr.grid,
            stream_cls={"prev": prev.cls, "curr": curr.cls},
            stream_patches={"prev": prev.patches, "curr": curr.patches},
            pixelwise_fused=False,
        )


@dataclass(frozen=True)
class InputContract:
    """How an encoder wants its frames: the record of source, preprocessing and licence.

    Attributes:
        source: where the weights come from (hub id, checkpoint layout, or "random init").
        resolution: ``(H, W)`` of the model input in pixels.
        resize: ``"squash"`` resizes to ``resolution`` directly; ``"center_crop"`` resizes the
            short side to ``floor(resolution / crop_pct)`` (timm ``transforms_imagenet_eval``'s
            ``scale_size``; exact for the HF processors' ``shortest_edge``) and takes the central
            ``resolution`` crop (the HF/timm/R3M evaluation pipelines).
        crop_pct: fraction of the resized short side that the crop keeps (``center_crop`` only).
        resize_at_resolution: frames already at ``resolution`` still go through the resize and
            crop (True: the transformers processors and timm's eval transform, e.g. DINOv2's
            224 -> 256 -> crop 224); False uses them as they are (R3M's ``forward``).
        crop_offset: how the centre crop's top/left offset ``(size - crop) / 2`` is rounded:
            ``"floor"`` (transformers ``center_crop``) or ``"round"`` (torchvision
            ``CenterCrop``, half to even, which timm and R3M use). They differ by one pixel when
            ``size - crop`` is 3 mod 4.
        resize_uint8: resize the frames as uint8 images with torchvision's ``resize`` (what the
            transformers image processors call; it agrees with PIL, which timm's eval transform
            uses, to a grey level or two). On CPU torchvision resizes uint8 natively, as PIL does;
            on GPU it resizes in float and rounds, as the processors do on GPU. False resizes
            float tensors (R3M).
        interpolation: ``"bilinear"`` or ``"bicubic"`` (antialiased, as torchvision's ``Resize``
            on tensors and PIL).
        scale: multiplies the uint8 values first: ``1/255`` gives ``[0, 1]``; ``1.0`` keeps
            ``0-255`` (R3M, which normalises inside its forward).
        mean: per-channel mean subtracted after ``scale`` (in ``[0, 1]`` units), or applied inside
            the model when ``normalised_inside`` is set.
        std: per-channel std, same convention as ``mean``.
        normalised_inside: the model applies ``mean``/``std`` itself (R3M; our models, which
            compute M/P channels from ``[0, 1]`` frames).
        frames_needed: 1 (one image) or 2 (a ``(prev, curr)`` pair).
        licence: licence of the weights.
        reference: where the constants above come from.
    """

    source: str
    resolution: tuple[int, int]
    resize: Literal["squash", "center_crop"] = "squash"
    crop_pct: float = 1.0
    resize_at_resolution: bool = True
    crop_offset: Literal["floor", "round"] = "round"
    resize_uint8: bool = False
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalised_inside: bool = False
    frames_needed: int = 1
    licence: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        if self.frames_needed not in (1, 2):
            raise ValueError(f"frames_needed must be 1 or 2, got {self.frames_needed}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.crop_offset not in ("floor", "round"):
            raise ValueError(f"crop_offset must be 'floor' or 'round', got {self.crop_offset!r}")

    def describe(self) -> dict:
        """A JSON-able dict of every field (what the feature cache hashes)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def to_frames(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` (numpy or torch) -> float ``[B, 3, H, W]`` in ``0-255`` on ``device``."""
    t = torch.as_tensor(frames) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 [B, H, W, 3] RGB, got {t.dtype} {tuple(t.shape)}; "
            "convert with frames.astype(np.uint8) and add a batch axis for a single frame"
        )
    return t.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # [B,H,W,3] -> [B,3,H,W]


class StrictLoadError(UserError, RuntimeError):
    """A checkpoint's keys or shapes do not match the model."""


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error naming every bad key.

    Raises:
        StrictLoadError: listing missing keys, unexpected keys and shape mismatches.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} shape mismatches"]
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if keys:
                parts.append(f"{label} ({len(keys)}), first 5: {', '.join(keys[:5])}")
        raise StrictLoadError(
            f"checkpoint {source} does not match {type(module).__name__}: " + "; ".join(parts)
            + ". Check that the encoder entry matches the checkpoint's layout and size "
            "(encoder.name / encoder.arch), or that the file is not truncated."
        )
    module.load_state_dict(state_dict, strict=True)


def state_dict_hash(module: nn.Module) -> str:
    """sha256 over every state_dict entry's name, dtype, shape and bytes (parameters and buffers)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class EncoderAdapter(nn.Module):
    """Base class: turns uint8 frames into :class:`Features` for one encoder.

    Subclasses set :attr:`contract` and :attr:`embed_dim` and implement :meth:`forward_pixels`.

    Args:
        contract: the encoder's input record.
        frames: ``"curr"`` (one-frame encoders see the current frame) or ``"both"`` (they encode
            prev and curr separately and concatenate: ``D`` doubles). Two-frame encoders always
            see both frames and reject ``"both"``.
        autocast_bf16: run the model under ``torch.autocast(dtype=bfloat16)``; features come
            back as float32.
    """

    name: str = ""

    def __init__(self, contract: InputContract, frames: Literal["curr", "both"] = "curr", autocast_bf16: bool = False) -> None:
        super().__init__()
        self.contract = contract
        self.frames = frames
        self.autocast_bf16 = autocast_bf16
        self._check_frames()

    def _check_frames(self) -> None:
        if self.frames not in ("curr", "both"):
            raise ConfigError(f"frames must be 'curr' or 'both', got {self.frames!r} (encoder.frames)")
        if self.frames == "both" and self.contract.frames_needed == 2:
            raise ConfigError(
                "frames='both' is for one-frame encoders; this encoder already takes (prev, curr). "
                "Use frames='curr' (override encoder.frames=curr)."
            )

    # -- to implement ------------------------------------------------------------------------
    embed_dim: int
    """``D`` of one forward pass (before ``frames="both"`` doubling)."""

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """Model forward on preprocessed frames.

        Args:
            prev: ``[B, 3, H, W]`` preprocessed previous frame, or None (one-frame encoders; for
                two-frame encoders None means a still image).
            curr: ``[B, 3, H, W]`` preprocessed current frame.
        """
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """``D`` of :meth:`encode`'s output: ``embed_dim``, doubled for ``frames="both"``."""
        return self.embed_dim * (2 if self.frames == "both" else 1)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` at ``contract.resolution``, scaled and
        (unless ``normalised_inside``) normalised, on the adapter's device."""
        c = self.contract
        x = _resize(to_frames(frames, self.device), c) * c.scale  # [B,3,H,W]
        if not c.normalised_inside:
            mean = torch.tensor(c.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(c.std, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    def encode(self, prev: np.ndarray | torch.Tensor | None, curr: np.ndarray | torch.Tensor) -> Features:
        """uint8 frames ``[B, H, W, 3]`` -> :class:`Features` (float32, on the adapter's device).

        ``prev`` may be None for one-frame encoders with ``frames="curr"``, and for two-frame
        encoders on a still image (their documented still-image input).
        """
        uses_prev = self.contract.frames_needed == 2 or self.frames == "both"
        if self.frames == "both" and prev is None:
            raise ValueError("frames='both' needs prev frames; pass encode(prev, curr)")
        curr_px = self.preprocess(curr)
        prev_px = self.preprocess(prev) if uses_prev and prev is not None else None
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast_bf16 else nullcontext()
        with ctx:
            if self.contract.frames_needed == 2:
                out = self.forward_pixels(prev_px, curr_px)
            elif self.frames == "both":  # one forward over [prev; curr], split back on B
                both = self.forward_pixels(None, torch.cat([prev_px, curr_px]))
                out = Features.concat_frames(*both.split(len(curr_px)))
            else:
                out = self.forward_pixels(None, curr_px)
        return out.to(dtype=torch.float32)

    def weights_hash(self) -> str:
        """sha256 of the wrapped model's state_dict tensors (see :func:`state_dict_hash`)."""
        return state_dict_hash(self)


def _resize(x: torch.Tensor, c: InputContract) -> torch.Tensor:
    """Resize ``[B, 3, H, W]`` floats in ``0-255`` to ``c.resolution`` as the contract says
    (squash, or short-side resize + centre crop); see :class:`InputContract` for each field.

    Antialiased like torchvision's tensor ``Resize`` and PIL; bicubic overshoot is clamped to
    ``[0, 255]`` (uint8 resizing rounds and clamps by itself).
    """
    size = tuple(c.resolution)
    h, w = x.shape[-2:]
    if (h, w) == size and not c.resize_at_resolution:
        return x
    if c.resize == "squash":
        target = size
    else:
        short = math.floor(min(size) / c.crop_pct)  # timm: scale_size = floor(img_size / crop_pct)
        # long side truncated, as torchvision's Resize(int) and transformers' shortest_edge resize
        target = (short, int(w * short / h)) if h <= w else (int(h * short / w), short)
    if target != (h, w) and c.resize_uint8:  # a resize to the same size is the identity
        mode = InterpolationMode.BICUBIC if c.interpolation == "bicubic" else InterpolationMode.BILINEAR
        x = resize_image(x.to(torch.uint8), list(target), interpolation=mode, antialias=True).float()
    elif target != (h, w):
        x = F.interpolate(x, size=target, mode=c.interpolation, antialias=True, align_corners=False)
        if c.interpolation == "bicubic":
            x = x.clamp(0.0, 255.0)
    if c.resize == "center_crop":
        offset = (lambda d: d // 2) if c.crop_offset == "floor" else (lambda d: round(d / 2.0))
        top, left = offset(target[0] - size[0]), offset(target[1] - size[1])
        x = x[..., top : top + size[0], left : left + size[1]]
    return x
