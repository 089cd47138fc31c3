"""Feature extraction tool: ``python -m avbr.adapters.features encoder=<name> input=<file> output=<file>``.

Inputs (exactly one):
    ``input=frames.npy|frames.npz``: uint8 frames ``[T, H, W, 3]`` (a video: pair ``t`` is
        ``(frame[max(t - gap, 0)], frame[t])``, so pair 0 is a still) or pairs ``[N, 2, H, W, 3]``
        (``[:, 0]`` prev, ``[:, 1]`` curr). An ``.npz`` must hold one array, or name it with
        ``input_key=``.
    ``source.name=<avbr.data source> source.root=<folder>``: every pair ``(t, t + gap)`` of every
        episode of a pretraining data source (``avbr.data.SOURCES``: ``hdf5_demos``, ``bridge``,
        ``video_folder``...), in episode order. The output then also holds ``t [T]``,
        ``episode [T]`` (index into the ``episodes`` list of the metadata) and, for sources with
        actions, ``action [T, A]``. All frames must have one size (every pair is stacked into
        one array): a folder of images of several sizes is an error naming two of them; resize
        them first (the encoder then resizes as its input contract says). Resizing here would
        change the aspect ratio or crop without the user choosing how.

Output: a ``.safetensors`` file with ``cls [T, D]``, ``patches [T, N, D]`` (unless
``keep_patches=false``) and the stream tensors, or ``features [T, ...]`` when a parameter-free
``readout`` is given; its metadata (``__metadata__["avbr"]``, JSON) records the encoder, its input
contract and the grid. Encoding runs in batches on the GPU when there is one, with a progress
bar, through the feature cache (``cache_dir``; ``cache_dir=null`` disables it).

Examples::

    python -m avbr.adapters.features encoder=dinov2_hf encoder.source=/data/weights/dinov2-small \\
        input=episode.npy output=dinov2.safetensors
    python -m avbr.adapters.features encoder=two_stream encoder.source=runs/ts/encoder \\
        source.name=hdf5_demos source.root=/data/libero/libero_object output=ts.safetensors
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from safetensors.torch import save_file

from avbr.cli import InputError, entry_point
from .cache import FeatureCache, array_hash, extract_features, files_hash
from .registry import EncoderConfig, build_encoder

__all__ = ["FeaturesAppConfig", "SourceInput", "load_array_pairs", "load_source_pairs", "run"]

log = logging.getLogger(__name__)


@dataclass
class SourceInput:
    """A pretraining data source as input (``avbr.data.build_source(name, root, **kwargs)``).

    Attributes:
        name: source registry name (``avbr.data.SOURCES``); ``""`` = not used.
        root: its data folder.
        gap: frames between prev and curr (``k``; stills use 0).
        kwargs: further source options.
    """

    name: str = ""
    root: str = ""
    gap: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeaturesAppConfig:
    """Schema of the feature tool.

    Attributes:
        encoder: the ``encoder`` config group (:class:`EncoderConfig`).
        input: ``.npy``/``.npz`` of uint8 frames ``[T, H, W, 3]`` or pairs ``[N, 2, H, W, 3]``.
        input_key: array name inside an ``.npz`` (``""`` = its only array).
        source: a data source instead of ``input``.
        gap: for ``[T, H, W, 3]`` input, prev = frame ``t - gap``.
        output: ``.safetensors`` file to write.
        batch_size: frames per forward pass.
        readout: optional parameter-free readout applied before saving (``cls``, ``mean``,
            ``pixelwise``, ``agg_a``, ``agg_d``); ``null`` saves raw features.
        keep_patches: save patch tokens with raw features.
        cache_dir: feature cache folder; ``null`` = no cache.
    """

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"encoder": "dinov2_hf"}])
    encoder: Any = MISSING
    input: str = ""
    input_key: str = ""
    source: SourceInput = field(default_factory=SourceInput)
    gap: int = 1
    output: str = "features.safetensors"
    batch_size: int = 64
    readout: str | None = None
    keep_patches: bool = True
    cache_dir: str | None = "~/.cache/avbr/features"


ConfigStore.instance().store(name="features_app", node=FeaturesAppConfig)


def load_array_pairs(path: str, key: str = "", gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(prev, curr)`` uint8 ``[T, H, W, 3]`` each from an ``.npy``/``.npz`` file (see module doc)."""
    data = np.load(path)
    if isinstance(data, np.lib.npyio.NpzFile):
        names = list(data.keys())
        if not key and len(names) != 1:
            raise InputError(f"{path} holds arrays {names}; choose one with input_key=<name>")
        arr = data[key or names[0]]
    else:
        arr = data
    if arr.dtype != np.uint8:
        raise InputError(f"{path}: frames must be uint8 RGB (0-255), got {arr.dtype}; convert them, e.g. "
                         "(frames * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1]")
    if arr.ndim == 5 and arr.shape[1] == 2 and arr.shape[-1] == 3:  # [N, 2, H, W, 3]
        return arr[:, 0], arr[:, 1]
    if arr.ndim == 4 and arr.shape[-1] == 3:  # [T, H, W, 3]: prev = frame t - gap (clamped at 0)
        return arr[np.maximum(np.arange(len(arr)) - gap, 0)], arr
    raise InputError(f"{path}: expected [T, H, W, 3] or [N, 2, H, W, 3] uint8 frames, got shape {arr.shape}")


def load_source_pairs(cfg: SourceInput) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
    """Every ``(t, t + gap)`` pair of every episode of the source, in order.

    Returns ``(prev, curr, extras, data_key)``: ``extras`` holds ``t``, ``episode`` (int index),
    ``action`` (when the source has actions) and ``episodes`` (the id list); ``data_key`` holds
    the source's unit list, the hash of its files' sizes and mtimes, and the options. All pairs are held in memory.
    """
    from avbr.data import build_source  # the pretraining data package, imported on use

    source = build_source(cfg.name, cfg.root, **cfg.kwargs)
    prev, curr, ts, eps, actions, ids = [], [], [], [], [], []
    for ref in source.episodes():
        ids.append(ref.id(source.root))
        k = 0 if source.is_still else cfg.gap
        n_pairs = 1 if source.is_still else max(source.episode_length(ref) - k, 0)
        for t in range(n_pairs):
            s = source.read_pair(ref, t, k)
            prev.append(s["prev"])
            curr.append(s["curr"])
            ts.append(t)
            eps.append(len(ids) - 1)
            if "action" in s:
                actions.append(s["action"])
    sizes = {}  # (H, W) -> the first episode with frames of that size
    for c, e in zip(curr, eps):
        sizes.setdefault(c.shape[:2], ids[e])
    if len(sizes) > 1:
        (size_a, ep_a), (size_b, ep_b) = list(sizes.items())[:2]
        raise InputError(f"source {cfg.name} under {cfg.root} has frames of {len(sizes)} sizes, e.g. {size_a} in "
                         f"{ep_a} and {size_b} in {ep_b}; the tool stacks every frame into one array, so resize the "
                         "images to one size first (the encoder then resizes them as its contract says)")
    if not curr:
        raise InputError(f"source {cfg.name} under {cfg.root} gave no pairs with gap {cfg.gap}")
    extras: dict[str, Any] = {"t": np.asarray(ts), "episode": np.asarray(eps), "episodes": ids}
    if len(actions) == len(curr):
        extras["action"] = np.stack(actions).astype(np.float32)
    files = [u for u in source.units if os.path.exists(u)]  # generated sources have no files
    key = json.dumps({"units": source.units, "files": files_hash(files), "source": OmegaConf.to_container(OmegaConf.structured(cfg))},
                     sort_keys=True)
    return np.stack(prev), np.stack(curr), extras, key


def run(cfg: DictConfig | FeaturesAppConfig) -> Path:
    """Extract features as ``cfg`` says and write ``cfg.output``; returns its path."""
    enc_cfg = EncoderConfig(**OmegaConf.to_container(OmegaConf.create(cfg.encoder), resolve=True))
    encoder = build_encoder(enc_cfg)
    log.info("encoder %s on %s: %s", enc_cfg.name, encoder.device, encoder.contract.describe())
    extras: dict[str, Any] = {}
    if bool(cfg.input) == bool(cfg.source.name):
        raise InputError("give exactly one input: input=<frames.npy|npz> or source.name=<data source> source.root=<folder>")
    if cfg.input:
        prev, curr = load_array_pairs(cfg.input, cfg.input_key, cfg.gap)
        data_key = array_hash(prev, curr)
    else:
        src = cfg.source if isinstance(cfg.source, SourceInput) else SourceInput(**OmegaConf.to_container(cfg.source))
        prev, curr, extras, data_key = load_source_pairs(src)
    if encoder.contract.frames_needed == 1 and encoder.frames == "curr":
        prev = None
    cache = FeatureCache(cfg.cache_dir) if cfg.cache_dir else None
    tensors, meta = extract_features(encoder, curr, prev, batch_size=cfg.batch_size, readout=cfg.readout,
                                     keep_patches=cfg.keep_patches, cache=cache, data_key=data_key)
    for name in ("t", "episode", "action"):
        if name in extras:
            tensors[name] = torch.as_tensor(extras[name])
    meta = {**meta, "episodes": extras.get("episodes", [])}
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out), metadata={"avbr": json.dumps(meta)})
    log.info("wrote %s: %s", out, {k: tuple(v.shape) for k, v in tensors.items()})
    return out


@entry_point
@hydra.main(version_base=None, config_path="pkg://avbr.configs", config_name="features_app")
def main(cfg: DictConfig) -> None:
    """Hydra entry point (see the module docstring)."""
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    run(cfg)


if __name__ == "__main__":
    main()
