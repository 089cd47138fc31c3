"""Finding weights: a local path, or a Hugging Face hub id fetched into the local HF cache.

When the hub cannot be reached (compute nodes without internet), :class:`WeightsNotFoundError`
says how to point the config at a local copy instead.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

__all__ = ["WeightsNotFoundError", "resolve_hf_dir", "resolve_hf_file", "read_state_dict"]

# Files a transformers `save_pretrained` directory may hold that the adapters read.
HF_PATTERNS = ["config.json", "preprocessor_config.json", "*.safetensors", "*.safetensors.index.json"]


class WeightsNotFoundError(FileNotFoundError):
    """The weights are neither a local path nor fetchable from the hub."""


def _offline_help(source: str, encoder: str, exc: Exception) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"could not fetch {source!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
        f"Without network, download it on a machine that has one, e.g. "
        f"`huggingface-cli download {source} --local-dir /data/weights/{source.split('/')[-1]}`, "
        f"copy the folder over and point the config at it: "
        f"`encoder={encoder} encoder.source=/data/weights/{source.split('/')[-1]}`."
    )


def resolve_hf_dir(source: str, encoder: str) -> Path:
    """A local directory as is, else ``snapshot_download(source)`` of the weight/config files.

    Args:
        source: a local directory or a hub repo id (``"facebook/dinov2-small"``).
        encoder: the registry name, quoted in the offline error.
    """
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        return Path(source)
    if os.path.exists(source) or source.startswith((".", "/")):
        raise WeightsNotFoundError(f"{source!r} is not a directory: expected a save_pretrained folder with config.json")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=HF_PATTERNS))
    except Exception as exc:  # network errors, gated repos, missing repo: all need the same advice
        raise _offline_help(source, encoder, exc) from exc


def resolve_hf_file(source: str, filename: str, encoder: str) -> Path:
    """A local file or directory (``<dir>/<filename>``) as is, else ``hf_hub_download``."""
    source = os.path.expanduser(source)
    if os.path.isfile(source):
        return Path(source)
    if os.path.isdir(source):
        path = Path(source) / filename
        if not path.is_file():
            raise WeightsNotFoundError(f"{source!r} has no {filename}")
        return path
    if source.startswith((".", "/")):
        raise WeightsNotFoundError(f"{source!r} does not exist")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, filename))
    except Exception as exc:
        raise _offline_help(source, encoder, exc) from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, a sharded ``*.safetensors.index.json``, a torch
    pickle (``.pt/.pth/.bin``, loaded with ``weights_only=True``), or a ``save_pretrained``
    directory (``model.safetensors`` or its index)."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "model.safetensors.index.json"):
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise WeightsNotFoundError(f"{path} has neither model.safetensors nor model.safetensors.index.json")
    if path.name.endswith(".safetensors.index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_file(path.parent / shard))
        return out
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} holds Python objects besides tensors, which are not loaded (weights_only=True). If you "
            f"trust the file, re-save its tensors once: torch.save(torch.load(p, weights_only=False)[...], p2)"
        ) from exc
