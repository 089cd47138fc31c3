"""Bridge V2 in RLDS / TFDS (``bridge_dataset`` of Open X-Embodiment), read without TensorFlow.

On disk (a prepared TFDS dataset folder)::

    bridge_dataset/1.0.0/
        dataset_info.json                          TFDS DatasetInfo: name, version, splits with
                                                   shardLengths (episodes per shard)
        features.json                              TFDS FeaturesDict of one episode (below)
        bridge_dataset-train.tfrecord-00000-of-01024   TFRecord shards, one record per episode
        bridge_dataset-val.tfrecord-00000-of-00128 ...

**TFRecord framing** (TensorFlow ``core/lib/io/record_writer.cc``): each record is
``uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)``,
little-endian, with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32)``; both CRCs are
checked (CRC-32C via ``google-crc32c``, Google's maintained binding of its C library).

**Record = a serialized ``tf.train.Example``** (``tensorflow/core/example/example.proto``,
``feature.proto``), decoded here with the ``protobuf`` package from a descriptor built in code.
TFDS's example serializer flattens the nested episode into ``"/"``-joined keys and concatenates
the per-step values of the ``steps`` sequence (``T`` steps). The episode features are those of the
Bridge builder (``dlimp`` ``rlds_converters/bridge_dataset/bridge_dataset_dataset_builder.py``):

    steps/observation/image_0..image_3   bytes [T]      JPEG; 0 fixed camera, 1-2 side, 3 wrist
                                                        (zeros where ``episode_metadata/has_image_i`` is 0)
    steps/observation/state              float [T * 7]  eef xyz, roll-pitch-yaw, gripper
    steps/action                         float [T * 7]  xyz delta, rpy delta, gripper absolute;
                                                        the last step's action is all zeros (padding)
    steps/language_instruction           bytes [T]      the episode's instruction on every step
    steps/is_first, steps/is_last        int64 [T]
    episode_metadata/file_path           bytes [1]      source trajectory folder

A pair at ``t`` (``t + k <= T - 1``) carries ``action = a_t``, ``actions = a_t .. a_{t+k-1}``
(never the padding), ``state`` at ``t`` and ``task`` = the instruction.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image

from avbr.data.base import SOURCES, CorruptFileError, EpisodeRef, FramePairSource, PairSample
from avbr.data.gaps import GapSchedule

__all__ = ["masked_crc32c", "record_offsets", "read_record", "example_class", "parse_example", "BridgeRLDSSource"]

_HEADER = struct.Struct("<QI")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def record_offsets(path: str) -> list[int]:
    """Byte offsets of every record of a TFRecord file (reads the 12-byte headers only)."""
    offsets, size = [], os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise CorruptFileError(path, f"truncated record header at byte {pos}")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise CorruptFileError(path, f"length CRC mismatch at byte {pos} (not a TFRecord file?)")
            offsets.append(pos)
            pos += _HEADER.size + length + 4
            f.seek(pos)
        if pos != size:
            raise CorruptFileError(path, "last record runs past the end of the file (truncated)")
    return offsets


def read_record(path: str, offset: int) -> bytes:
    """The data of the record at ``offset``, its CRCs checked."""
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(_HEADER.size)
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise CorruptFileError(path, f"length CRC mismatch at byte {offset}")
        data = f.read(length)
        footer = f.read(4)
    if len(data) != length or len(footer) != 4:
        raise CorruptFileError(path, f"record at byte {offset} is truncated")
    if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise CorruptFileError(path, f"data CRC mismatch in the record at byte {offset}")
    return data


@lru_cache(maxsize=1)
def example_class() -> type:
    """The ``tf.train.Example`` message class, from a descriptor equal to TensorFlow's
    ``example.proto`` + ``feature.proto`` (package ``tensorflow``; field numbers as there)."""
    f = descriptor_pb2.FileDescriptorProto(name="avbr_tf_example.proto", package="tensorflow", syntax="proto3")
    label_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    label_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    t = descriptor_pb2.FieldDescriptorProto
    for name, ftype in (("BytesList", t.TYPE_BYTES), ("FloatList", t.TYPE_FLOAT), ("Int64List", t.TYPE_INT64)):
        m = f.message_type.add(name=name)
        field = m.field.add(name="value", number=1, label=label_rep, type=ftype)
        if ftype != t.TYPE_BYTES:
            field.options.packed = True
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, msg) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                          ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=number, label=label_opt, type=t.TYPE_MESSAGE,
                          type_name=f".tensorflow.{msg}", oneof_index=0)
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=label_opt, type=t.TYPE_STRING)
    entry.field.add(name="value", number=2, label=label_opt, type=t.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=label_rep, type=t.TYPE_MESSAGE,
                       type_name=".tensorflow.Features.FeatureEntry")
    example = f.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=label_opt, type=t.TYPE_MESSAGE,
                      type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(data: bytes) -> dict[str, Any]:
    """A serialized ``tf.train.Example`` as ``{key: list[bytes] | float32 [n] | int64 [n]}``."""
    msg = example_class()()
    msg.ParseFromString(data)
    out: dict[str, Any] = {}
    for key, feature in msg.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[key] = list(feature.bytes_list.value)
        elif kind == "float_list":
            out[key] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feature.int64_list.value, dtype=np.int64)
    return out


def _decode_jpeg(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(where, f"undecodable image ({e})") from e


@SOURCES.register("bridge_rlds")
class BridgeRLDSSource(FramePairSource):
    """Bridge V2 as RLDS TFRecord shards (see the module docstring), with actions.

    The episode id is ``<shard path>:<record index>``.

    Args:
        root: the TFDS version folder (``bridge_dataset/1.0.0``) or a folder above it.
        gap: gap schedule.
        camera: image index (``steps/observation/image_<camera>``): 0 fixed, 1-2 side, 3 wrist.
        split: TFDS split whose shards are read (``train`` or ``val``).
    """

    name = "bridge_rlds"

    def __init__(self, root: str, gap: GapSchedule | None = None, camera: int = 0, split: str = "train") -> None:
        super().__init__(root, gap)
        self.image_key = f"steps/observation/image_{camera}"
        self.units = sorted(
            os.path.join(d, n) for d, _, names in os.walk(self.root, followlinks=True)
            for n in names if f"-{split}.tfrecord-" in n)
        self._require_units(f"*-{split}.tfrecord-* shards")
        self._check_features(Path(self.units[0]).parent)
        self._offsets: dict[str, list[int]] = {}
        self._lengths: dict[EpisodeRef, int] = {}
        self._cache: OrderedDict[EpisodeRef, dict[str, Any]] = OrderedDict()

    def _check_features(self, folder: Path) -> None:
        """Fail early when ``features.json`` lacks the camera (e.g. a different RLDS dataset)."""
        path = folder / "features.json"
        if not path.is_file():
            raise FileNotFoundError(f"BridgeRLDSSource: no features.json beside the shards in {folder}")
        try:
            episode = json.loads(path.read_text())["featuresDict"]["features"]
            steps = episode["steps"]["sequence"]["feature"]["featuresDict"]["features"]
            cameras = sorted(steps["observation"]["featuresDict"]["features"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not an RLDS episode FeaturesDict with steps/observation ({e!r})") from e
        if self.image_key.rsplit("/", 1)[1] not in cameras:
            raise KeyError(f"{path}: no observation {self.image_key!r}; observations present: {cameras}")

    def _record_offsets(self, path: str) -> list[int]:
        if path not in self._offsets:
            self._offsets[path] = record_offsets(path)
        return self._offsets[path]

    def episodes_in(self, unit: str) -> list[EpisodeRef]:
        return [EpisodeRef(unit, str(i)) for i in range(len(self._record_offsets(unit)))]

    def _episode(self, ref: EpisodeRef) -> dict[str, Any]:
        if ref not in self._cache:
            ex = parse_example(read_record(ref.path, self._record_offsets(ref.path)[int(ref.key)]))
            missing = [k for k in (self.image_key, "steps/action", "steps/language_instruction") if k not in ex]
            if missing:
                raise CorruptFileError(ref.path, f"episode {ref.key} lacks {missing} (not the bridge_dataset layout)")
            length = len(ex[self.image_key])
            ex["steps/action"] = ex["steps/action"].reshape(length, -1)
            if "steps/observation/state" in ex:
                ex["steps/observation/state"] = ex["steps/observation/state"].reshape(length, -1)
            self._cache[ref] = ex
            self._lengths[ref] = length
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[ref]

    def episode_length(self, ref: EpisodeRef) -> int:
        if ref not in self._lengths:
            self._episode(ref)
        return self._lengths[ref]

    def read_pair(self, ref: EpisodeRef, t: int, k: int) -> PairSample:
        ex = self._episode(ref)
        where = f"{ref.path} episode {ref.key}"
        prev = _decode_jpeg(ex[self.image_key][t], where)
        curr = _decode_jpeg(ex[self.image_key][t + k], where)
        actions = ex["steps/action"][t : t + max(k, 1)]
        extra = {"action": actions[0], "actions": actions}
        if "steps/observation/state" in ex:
            extra["state"] = ex["steps/observation/state"][t]
        task = ex["steps/language_instruction"][t].decode("utf-8", errors="replace")
        return self._pair(ref, prev, curr, t, k, task=task, **extra)
