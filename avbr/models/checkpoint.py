"""Encoder-only checkpoints: what pretraining exports and the adapters load.

A checkpoint is a directory with

- ``encoder.safetensors``: the encoder's ``state_dict`` (unwrapped: no DDP/compile prefixes);
- ``encoder.json``: ``{"format_version": 1, "name": <registry name>, "kwargs": {...config fields}}``.

Loading rebuilds the encoder through the registry from ``encoder.json`` and loads strictly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from avbr.models.registry import ENCODER_NAMES, build_model

__all__ = ["FORMAT_VERSION", "save_encoder", "load_encoder", "encoder_spec"]

FORMAT_VERSION = 1
WEIGHTS = "encoder.safetensors"
SPEC = "encoder.json"


def encoder_spec(encoder: nn.Module) -> dict[str, Any]:
    """``{"format_version", "name", "kwargs"}`` describing how to rebuild ``encoder``."""
    name = getattr(encoder, "registry_name", None)
    if name not in ENCODER_NAMES:
        raise ValueError(f"cannot describe encoder of type {type(encoder).__name__}")
    return {"format_version": FORMAT_VERSION, "name": name, "kwargs": dataclasses.asdict(encoder.cfg)}


def save_encoder(encoder: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``encoder`` (an encoder of ``avbr.models``) to ``directory``; returns the directory.

    Args:
        encoder: the encoder, unwrapped from DDP / ``torch.compile``.
        directory: created if missing; files are written to temporaries and renamed (atomic).
        extra: additional JSON-serialisable metadata stored under ``"extra"`` (step, run id...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = encoder_spec(encoder) | {"extra": extra or {}}
    state = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    tmp_w, tmp_s = directory / (WEIGHTS + ".tmp"), directory / (SPEC + ".tmp")
    save_file(state, str(tmp_w))
    tmp_s.write_text(json.dumps(spec, indent=2))
    os.replace(tmp_w, directory / WEIGHTS)
    os.replace(tmp_s, directory / SPEC)
    return directory


def load_encoder(directory: str | os.PathLike) -> nn.Module:
    """Rebuild and strictly load an encoder written by ``save_encoder``."""
    directory = Path(directory)
    spec_path, weights_path = directory / SPEC, directory / WEIGHTS
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"no {path.name} in {directory}: an encoder checkpoint is a directory written by "
                "avbr.models.save_encoder (python -m avbr.train exports one as <run>/encoder)"
            )
    spec = json.loads(spec_path.read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{spec_path} has format_version {spec.get('format_version')}, this avbr reads {FORMAT_VERSION}")
    encoder = build_model(spec["name"], **spec["kwargs"])
    state = load_file(str(weights_path))
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"encoder checkpoint {directory} does not match {spec['name']}: missing keys {missing}, unexpected keys {unexpected}")
    return encoder
