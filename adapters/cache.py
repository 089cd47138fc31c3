"""Batched feature extraction and the project's one on-disk feature cache.

Every cached feature set (the feature tool, :func:`extract_features`, and the demo features of
policy heads, ``avbr.eval.rollouts.policy_data``) goes through :class:`FeatureCache` with a key
from :func:`cache_key`: a sha256 over (1) the encoder weights (:func:`state_dict_hash`: every
tensor's name, dtype, shape and bytes), (2) the encoder's :class:`InputContract` (preprocessing)
and adapter settings (registry name, ``frames``, bf16 autocast), (3) the readout and the caller's
options (what is kept, cameras, frame gap...), and (4) the data: :func:`array_hash` of the frame
bytes, :func:`file_digest` of a file's bytes, or :func:`files_hash` of a data source's file list
with sizes and modification times. A change in any of them gives a new key, so stale features are
never reused. Entries are ``<root>/<key>/features.safetensors`` + ``meta.json``, written to a
temporary folder and renamed into place (a crashed run leaves no half-written entry).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avbr.progress import finish, progress_bar

from .base import EncoderAdapter, Features
from .readouts import build_readout

__all__ = ["array_hash", "file_digest", "files_hash", "FeatureCache", "cache_key", "extract_features",
           "features_to_tensors", "tensors_to_features"]

#: Version of the key layout and entry format (2: caller options in the key, demo features share the cache).
FORMAT_VERSION = 2


def array_hash(*arrays: np.ndarray | torch.Tensor | None) -> str:
    """sha256 of each array's dtype, shape and bytes (None hashes as a marker)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none|")
            continue
        a = np.ascontiguousarray(a.cpu().numpy() if isinstance(a, torch.Tensor) else a)
        h.update(f"{a.dtype}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (read in 4 MiB blocks): for data whose files may be rewritten in place."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def files_hash(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 of a file list with each file's size and mtime (ns): cheap, and any rewrite changes it."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(encoder: EncoderAdapter, data: str, readout: str | None, **options: Any) -> str:
    """The cache key of ``encoder``'s features of ``data``.

    Args:
        encoder: the adapter (its weights, contract, name, ``frames`` and autocast enter the key).
        data: a hash of the input (:func:`array_hash`, :func:`file_digest`, :func:`files_hash`).
        readout: the readout name, or None for raw features.
        options: everything else the stored tensors depend on (JSON-able; ``str`` for the rest).
    """
    parts = {
        "format": FORMAT_VERSION,
        "encoder": encoder.name,
        "weights": encoder.weights_hash(),
        "contract": encoder.contract.describe(),
        "frames": encoder.frames,
        "autocast_bf16": encoder.autocast_bf16,
        "readout": readout,
        "options": options,
        "data": data,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def features_to_tensors(f: Features) -> tuple[dict[str, torch.Tensor], dict]:
    """:class:`Features` -> (flat tensor dict, JSON metadata) for safetensors."""
    t = {"cls": f.cls, "patches": f.patches}
    t.update({f"stream_cls.{k}": v for k, v in f.stream_cls.items()})
    t.update({f"stream_patches.{k}": v for k, v in f.stream_patches.items()})
    return {k: v.contiguous().cpu() for k, v in t.items()}, {"grid": list(f.grid), "pixelwise_fused": f.pixelwise_fused}


def tensors_to_features(t: dict[str, torch.Tensor], meta: dict) -> Features:
    """Inverse of :func:`features_to_tensors`."""
    def pick(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}

    return Features(cls=t["cls"], patches=t["patches"], grid=tuple(meta["grid"]), stream_cls=pick("stream_cls."),
                    stream_patches=pick("stream_patches."), pixelwise_fused=meta["pixelwise_fused"])


class FeatureCache:
    """A folder of cached feature sets, one subfolder per key.

    Args:
        root: cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.expanduser(root))

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        """``(tensors, meta)`` of ``key``, or None on a miss."""
        d = self.path(key)
        if not (d / "meta.json").is_file():
            return None
        return load_file(d / "features.safetensors"), json.loads((d / "meta.json").read_text())

    def save(self, key: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
        """Write atomically: temporary folder, then rename to ``<root>/<key>``."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        save_file(tensors, tmp / "features.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        target = self.path(key)
        if target.exists():  # another process finished first: same key, same content
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
        return target


def _batches(prev: np.ndarray | None, curr: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    for i in range(0, len(curr), batch_size):
        yield (None if prev is None else prev[i : i + batch_size]), curr[i : i + batch_size]


@torch.inference_mode()
def extract_features(
    encoder: EncoderAdapter,
    curr: np.ndarray,
    prev: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    readout: str | None = None,
    keep_patches: bool = True,
    cache: FeatureCache | None = None,
    data_key: str | None = None,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Encode ``(prev, curr)`` pairs in batches; read/write ``cache`` when given.

    Args:
        encoder: any registry adapter.
        curr: uint8 ``[T, H, W, 3]`` current frames.
        prev: uint8 ``[T, H, W, 3]`` previous frames, or None (one-frame encoders, still images).
        batch_size: frames per forward.
        readout: a parameter-free readout (``cls``, ``mean``, ``pixelwise``, ``agg_a``, ``agg_d``)
            to apply before storing, or None to store the raw :class:`Features`.
        keep_patches: with ``readout=None``, also store the patch tokens (large: ``T x N x D``).
        cache: where to look up and store results.
        data_key: hash of the data; default :func:`array_hash` of ``prev`` and ``curr``.
        progress: show a progress bar (:mod:`avbr.progress`: only on a terminal) and a summary line.

    Returns:
        ``(tensors, meta)``: with a readout, ``{"features": [T, ...]}``; else ``cls [T, D]``,
        ``patches [T, N, D]`` (if kept) and the stream tensors, as :func:`features_to_tensors`.
    """
    key = None
    if cache is not None:
        key = cache_key(encoder, data_key or array_hash(prev, curr), readout, keep_patches=keep_patches)
        hit = cache.load(key)
        if hit is not None:
            return hit
    head = None
    chunks: list[dict[str, torch.Tensor]] = []
    meta: dict = {}
    n_batches = -(-len(curr) // batch_size)
    bar = progress_bar(total=len(curr), desc=f"encode {encoder.name}", unit="frame", enabled=progress)
    for p, c in _batches(prev, curr, batch_size):
        f = encoder.encode(p, c)
        if readout is not None:
            if head is None:
                head = build_readout(readout, f)
            if head.learned:
                raise ValueError(f"readout {readout!r} has learned parameters; store raw features (readout=null) and train it on them")
            t, meta = {"features": head(f).cpu()}, {"readout": readout}
        else:
            t, meta = features_to_tensors(f)
            if not keep_patches:
                t = {k: v for k, v in t.items() if "patches" not in k}
        chunks.append(t)
        bar.update(len(c))
    if progress:
        finish(bar, f"{len(curr)} frames in {n_batches} batches, {len(curr) / max(time.time() - bar.start_t, 1e-9):.1f} frames/s")
    else:
        bar.close()
    tensors = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    meta = {**meta, "encoder": encoder.name, "contract": encoder.contract.describe(), "count": len(curr)}
    if cache is not None and key is not None:
        cache.save(key, tensors, {**meta, "key": key})
    return tensors, meta
