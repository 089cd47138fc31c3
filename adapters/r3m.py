"""R3M (Nair et al. 2022): a torchvision ResNet-18/34/50 trained on Ego4D with time contrast.

Entry ``r3m``; ``arch`` = ``resnet18`` | ``resnet34`` | ``resnet50`` (default ``resnet50``).
``source``: the ``model.pt`` that R3M's own loader caches (``~/.r3m/r3m_50/model.pt`` for
``load_r3m("resnet50")``), a folder holding it, or the shorthand ``r3m_18`` / ``r3m_34`` /
``r3m_50`` for that cache path. ``model.pt`` is read with ``torch.load(weights_only=True)`` (no
code runs); a ``.safetensors`` file holding the ``"r3m"`` entry (what the error for a pickle that
needs code tells you to write) is read too. R3M's weights live on Google Drive, not on a hub our code can
reach, so there is no download here: the error says where to put the file.

Checkpoint layout (facebookresearch/r3m, ``r3m/__init__.py`` ``load_r3m``): ``torch.load(path)
["r3m"]`` is the state_dict of ``DataParallel(R3M)``: the ResNet under ``module.convnet.*`` (its
``fc`` replaced by ``Identity``, so no ``fc`` keys) and the language heads under
``module.lang_enc.*`` / ``module.lang_rew.*``, which R3M itself deletes before loading.
``convert_r3m`` does the same by name and strips ``module.``.

Input (``r3m/models/models_r3m.py`` ``R3M.forward``): float images in 0-255; the model divides by
255 and applies the ImageNet ``Normalize`` inside; frames that are not 224 x 224 first go through
``Resize(256)`` + ``CenterCrop(224)`` (bilinear). Our contract reproduces this
(``scale=1``, ``normalised_inside``, ``center_crop`` with ``crop_pct = 224/256``, frames already at
224 used as they are: ``resize_at_resolution=False``; float resize, torchvision crop offset).

Readout: ``cls`` = R3M's embedding, the global average pool of ``layer4`` (512-d for ResNet-18/34,
2048-d for ResNet-50); ``patches`` = the ``layer4`` feature map, ``[B, 7*7, D]`` at 224 px.
Licence: MIT.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderAdapter, Features, InputContract, load_strict
from .hub import WeightsNotFoundError, read_state_dict
from .registry import EncoderConfig, register_encoder
from avbr.registry import UnknownNameError

__all__ = ["R3MNet", "R3MAdapter", "convert_r3m"]

StateDict = dict[str, torch.Tensor]

_ARCHS = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
          "resnet50": torchvision.models.resnet50}
_CACHE = {"r3m_18": "resnet18", "r3m_34": "resnet34", "r3m_50": "resnet50"}


def convert_r3m(checkpoint: dict) -> StateDict:
    """R3M ``model.pt`` contents -> ``R3MNet`` state_dict: take ``checkpoint["r3m"]``, drop
    ``module.lang_enc.*`` and ``module.lang_rew.*``, strip the ``module.`` (DataParallel) prefix."""
    if "r3m" not in checkpoint:
        raise KeyError(f"not an R3M checkpoint: expected a dict with key 'r3m', got keys {sorted(checkpoint)[:10]}")
    out = {}
    for k, v in checkpoint["r3m"].items():
        if k.startswith(("module.lang_enc.", "module.lang_rew.")):
            continue
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


class R3MNet(nn.Module):
    """The R3M visual encoder: ImageNet normalisation inside, then a torchvision ResNet.

    Args:
        arch: ``resnet18`` | ``resnet34`` | ``resnet50``.
    """

    def __init__(self, arch: str = "resnet50") -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise UnknownNameError(f"unknown R3M arch {arch!r}; valid: {sorted(_ARCHS)}")
        self.convnet = _ARCHS[arch](weights=None)
        self.convnet.fc = nn.Identity()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = 2048 if arch == "resnet50" else 512

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, 3, H, W]`` floats in 0-255 -> (embedding ``[B, D]``, layer4 map ``[B, D, h, w]``)."""
        net = self.convnet
        x = (x / 255.0 - self.mean) / self.std
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        fmap = net.layer4(net.layer3(net.layer2(net.layer1(x))))  # [B, D, h, w]
        return torch.flatten(net.avgpool(fmap), 1), fmap


class R3MAdapter(EncoderAdapter):
    """:class:`R3MNet` behind the adapter interface."""

    def __init__(self, model: R3MNet, contract: InputContract, frames: str = "curr", autocast_bf16: bool = False) -> None:
        super().__init__(contract, frames, autocast_bf16)
        self.model = model
        self.embed_dim = model.embed_dim

    def forward_pixels(self, prev: torch.Tensor | None, curr: torch.Tensor) -> Features:
        """``curr [B, 3, 224, 224]`` in 0-255 -> cls ``[B, D]``, patches ``[B, h*w, D]``."""
        emb, fmap = self.model(curr)
        b, d, h, w = fmap.shape
        return Features(cls=emb, patches=fmap.flatten(2).transpose(1, 2), grid=(h, w))  # [B,D,h,w] -> [B,h*w,D]


def _checkpoint_path(source: str) -> Path:
    if source in _CACHE:
        source = os.path.expanduser(f"~/.r3m/{source}/model.pt")
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise WeightsNotFoundError(
            f"R3M checkpoint {path} not found. R3M's weights are on Google Drive: run "
            "`from r3m import load_r3m; load_r3m('resnet50')` on a machine with network (it saves "
            "~/.r3m/r3m_50/model.pt) or download model.pt from the links in facebookresearch/r3m "
            "r3m/__init__.py, copy it here and set `encoder=r3m encoder.arch=resnet50 "
            "encoder.source=/data/weights/r3m_50/model.pt`."
        )
    return path


@register_encoder("r3m")
def _r3m(cfg: EncoderConfig) -> R3MAdapter:
    arch = cfg.arch or "resnet50"
    if cfg.source in _CACHE and _CACHE[cfg.source] != arch:
        raise ValueError(f"encoder.source={cfg.source} is an {_CACHE[cfg.source]} checkpoint but encoder.arch={arch}")
    model = R3MNet(arch)
    if cfg.source is not None:
        path = _checkpoint_path(cfg.source)
        # a .safetensors file can hold only the flat tensors: it is the checkpoint's "r3m" entry
        checkpoint = {"r3m": read_state_dict(path)} if path.suffix == ".safetensors" else read_state_dict(path)
        load_strict(model, convert_r3m(checkpoint), source=str(path))
    size = cfg.img_size or 224
    contract = InputContract(
        source=f"{cfg.source} (R3M {arch})" if cfg.source else f"random init (R3M {arch})",
        resolution=(size, size),
        resize="center_crop",
        crop_pct=224 / 256,
        resize_at_resolution=False,
        crop_offset="round",
        resize_uint8=False,
        interpolation="bilinear",
        scale=1.0,
        normalised_inside=True,
        frames_needed=1,
        licence="MIT",
        reference="facebookresearch/r3m r3m/models/models_r3m.py R3M.forward (x/255, Resize(256), CenterCrop(224), ImageNet Normalize)",
    )
    return R3MAdapter(model.eval(), contract, cfg.frames, cfg.autocast_bf16)
