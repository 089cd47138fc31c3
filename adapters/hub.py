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
from avbr.cli import UserError

__all__ = ["WeightsNotFoundError", "WeightsFormatError", "WEIGHT_FILES", "resolve_hf_dir", "resolve_hf_file", "read_state_dict"]

# Weight files of a transformers `save_pretrained` folder (or a timm hub repo), in the order they
# are preferred: safetensors, then the older torch pickles (`pytorch_model.bin`), single or sharded.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# What is fetched from the hub: configs and safetensors; the .bin files only for repos without
# safetensors (see resolve_hf_dir), so a repo holding both is not downloaded twice.
_CONFIG_PATTERNS = ["config.json", "preprocessor_config.json"]
_SAFETENSORS_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]
_BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


class WeightsNotFoundError(UserError, FileNotFoundError):
    """The weights are neither a local path nor fetchable from the hub."""


class WeightsFormatError(UserError, ValueError):
    """A weights file that cannot be read safely: a pickle that needs code, or not a checkpoint."""


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
        directory = Path(snapshot_download(source, allow_patterns=_CONFIG_PATTERNS + _SAFETENSORS_PATTERNS))
        if not any((directory / name).is_file() for name in WEIGHT_FILES[:2]):  # an older repo: .bin only
            directory = Path(snapshot_download(source, allow_patterns=_CONFIG_PATTERNS + _BIN_PATTERNS))
        return directory
    except Exception as exc:  # network errors, gated repos, missing repo: all need the same advice
        raise _offline_help(source, encoder, exc) from exc


def resolve_hf_file(source: str, filenames: tuple[str, ...], encoder: str) -> Path:
    """A local file as is; a local directory's first file of ``filenames``; else
    ``hf_hub_download`` of the first of ``filenames`` the hub repo has."""
    source = os.path.expanduser(source)
    if os.path.isfile(source):
        return Path(source)
    if os.path.isdir(source):
        for name in filenames:
            if (Path(source) / name).is_file():
                return Path(source) / name
        raise WeightsNotFoundError(f"{source!r} has none of {', '.join(filenames)}")
    if source.startswith((".", "/")):
        raise WeightsNotFoundError(f"{source!r} does not exist")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in filenames:
        try:
            return Path(hf_hub_download(source, name))
        except EntryNotFoundError:
            continue
        except Exception as exc:
            raise _offline_help(source, encoder, exc) from exc
    raise WeightsNotFoundError(f"hub repo {source!r} has none of {', '.join(filenames)}")


def _unsafe_globals(path: Path) -> list[str]:
    """Python globals a legacy torch pickle would import (empty for a tensors-only file)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, pickle.UnpicklingError):  # not a torch.save zip archive
        return []


def _read_torch_pickle(path: Path) -> dict:
    """``torch.load(weights_only=True)``: tensors, containers and numbers only, no code runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        needs = _unsafe_globals(path)
        if needs:
            # a save_pretrained folder picks model.safetensors up by itself; a lone file is re-pointed
            target = path.parent / "model.safetensors" if path.name.startswith("pytorch_model") else path.with_suffix(".safetensors")
            raise WeightsFormatError(
                f"{path} is a pickle that needs Python code to load ({', '.join(needs[:5])}), which is not "
                f"run (torch.load(weights_only=True)). If you trust the file, convert its tensors to "
                f"safetensors once (then use {target} as encoder.source, or its folder): python -c \"import torch; "
                f"from safetensors.torch import save_file; ckpt = torch.load('{path}', weights_only=False); "
                f"sd = ckpt.get('state_dict', ckpt); "
                f"save_file({{k: v.contiguous() for k, v in sd.items()}}, '{target}')\" "
                f"(for R3M's model.pt take ckpt['r3m'])"
            ) from exc
        raise WeightsFormatError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "the file may be truncated or not a weights file: download it again"
        ) from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, a sharded ``*.index.json`` (safetensors or ``.bin``
    shards), a torch pickle (``.pt/.pth/.bin``, loaded with ``weights_only=True``), or a
    ``save_pretrained`` directory (the first of :data:`WEIGHT_FILES` it holds).

    Raises:
        WeightsNotFoundError: a directory without any of :data:`WEIGHT_FILES`.
        WeightsFormatError: a pickle that needs code to load, or a file that is not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise WeightsNotFoundError(f"{path} has none of {', '.join(WEIGHT_FILES)}")
    if path.name.endswith(".index.json"):
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(read_state_dict(path.parent / shard))
        return out
    if path.suffix == ".safetensors":
        return load_file(path)
    return _read_torch_pickle(path)
