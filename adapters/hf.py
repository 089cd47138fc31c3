"""Shared loading path of the transformers-based adapters (DINOv2, CLIP, SigLIP, VideoMAE).

``build_hf_model`` reads ``config.json`` from the source (or a preset for random init), builds the
real transformers class, reads the checkpoint tensors, passes them through the entry's
``convert_<source>`` function and loads them with :func:`load_strict`.

The converters map the on-disk layout (what ``save_pretrained`` writes and the hub serves) to the
in-memory parameter names of the installed transformers version, which renames some attention
weights at load time (``transformers/conversion_mapping.py``); each rename is spelled out by name.
Those names are the ones of transformers >= 5.24 (the pyproject floor, the version tested): 5.0.0
still used the 4.x in-memory names, which the converters do not produce.

Weights: ``model.safetensors`` (or its index), else ``pytorch_model.bin`` (or its index), read
with ``torch.load(weights_only=True)``; see :func:`avbr.adapters.hub.read_state_dict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .base import load_strict
from .hub import read_state_dict, resolve_hf_dir

__all__ = ["build_hf_model", "rename_keys", "select_prefix", "preprocessor_stats"]

StateDict = dict[str, torch.Tensor]


def rename_keys(state_dict: StateDict, renames: list[tuple[str, str]]) -> StateDict:
    """Apply substring renames ``(old, new)`` in order to every key."""
    out = {}
    for k, v in state_dict.items():
        for old, new in renames:
            k = k.replace(old, new)
        out[k] = v
    return out


def select_prefix(state_dict: StateDict, keep: str, drop: tuple[str, ...]) -> StateDict:
    """Keys under any ``drop`` prefix are discarded; keys under ``keep`` lose that prefix.

    Any other key is kept unchanged, so that :func:`load_strict` reports it as unexpected.
    """
    out = {}
    for k, v in state_dict.items():
        if k.startswith(drop):
            continue
        out[k[len(keep) :] if k.startswith(keep) else k] = v
    return out


def preprocessor_stats(directory: Path) -> dict[str, Any]:
    """``image_mean``/``image_std`` of ``preprocessor_config.json`` if the directory has one.

    The authors' own preprocessing record wins over an adapter's defaults.
    """
    path = Path(directory) / "preprocessor_config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    return {k: tuple(cfg[k]) for k in ("image_mean", "image_std") if k in cfg}


def build_hf_model(
    model_cls: type[PreTrainedModel],
    config_cls: type[PretrainedConfig],
    *,
    source: str | None,
    preset: dict[str, Any],
    overrides: dict[str, Any],
    convert: Callable[[StateDict], StateDict],
    encoder: str,
) -> tuple[nn.Module, Path | None]:
    """Build ``model_cls`` and load ``source`` strictly, or random-init it from ``preset``.

    Args:
        model_cls: e.g. ``transformers.Dinov2Model``.
        config_cls: its config class; ``from_pretrained`` also reads the vision part of a full
            CLIP/SigLIP ``config.json``.
        source: hub id or local ``save_pretrained`` directory; None = random init.
        preset: config fields of the random-init architecture.
        overrides: config fields applied on top (``EncoderConfig.model_kwargs``).
        convert: ``convert_<source>(state_dict)`` of the entry.
        encoder: registry name, for error messages.

    Returns:
        ``(model in eval mode, source directory or None)``.
    """
    if source is None:
        config = config_cls(**{**preset, **overrides})
        return model_cls(config).eval(), None
    directory = resolve_hf_dir(source, encoder)
    config = config_cls.from_pretrained(directory, **overrides)
    model = model_cls(config)
    load_strict(model, convert(read_state_dict(directory)), source=str(source))
    return model.eval(), directory
