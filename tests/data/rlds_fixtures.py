"""A tiny ``bridge_dataset`` (RLDS / TFDS) written without TensorFlow and without the reader's code.

Followed:

- TensorFlow ``tensorflow/core/lib/io/record_writer.cc`` / ``crc32c.h``: record framing
  ``uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data)`` (little-endian),
  mask ``((crc >> 15) | (crc << 17)) + 0xa282ead8``. CRC-32C (Castagnoli, reflected polynomial
  0x82F63B78) is computed from its polynomial here, independently of the reader's ``google-crc32c``.
- TensorFlow ``tensorflow/core/example/example.proto`` and ``feature.proto``: ``Example{features=1}``,
  ``Features{map<string, Feature> feature=1}``, ``Feature{oneof bytes_list=1, float_list=2,
  int64_list=3}``, ``*List{repeated value=1}`` (packed floats and int64s). The protobuf wire format
  is written by hand (varints and length-delimited fields), not through the reader's descriptor.
- dlimp ``rlds_converters/bridge_dataset/bridge_dataset_dataset_builder.py``: the episode features
  (``steps/observation/image_0..3`` JPEG, ``state`` [7], ``action`` [7] with a zero action appended
  at the last step, ``is_first``/``is_last``, ``language_instruction``; ``episode_metadata/*``) and
  TFDS's flattening of nested features into ``"/"``-joined keys with the steps concatenated.
- TFDS ``features.json`` / ``dataset_info.json`` (FeaturesDict and DatasetInfo protos as JSON),
  shard names ``bridge_dataset-<split>.tfrecord-<i>-of-<n>``.

Frames carry :func:`lerobot_fixtures.pattern` (camera id = image index + 1); actions are
``1000 * episode + 10 * t + j`` except the padded last one (zeros).
"""

from __future__ import annotations

import json
import struct
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from lerobot_fixtures import pattern

EPISODES = ((0, 6, "pick up the spoon"), (1, 4, "close the microwave"), (2, 5, "put the pot in the sink"))
SHARDS = ((0, 1), (2,))  # episodes per train shard


def _table_entry(byte: int) -> int:
    crc = byte
    for _ in range(8):
        crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc


_TABLE = [_table_entry(b) for b in range(256)]


def crc32c(data: bytes) -> int:
    """CRC-32C, byte-table driven (check value: crc32c(b"123456789") == 0xE3069283)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: list[bytes] | np.ndarray) -> bytes:
    if isinstance(value, list):  # BytesList{repeated bytes value = 1}
        return _field(1, b"".join(_field(1, v) for v in value))
    if value.dtype.kind == "f":  # FloatList{repeated float value = 1 [packed]}
        return _field(2, _field(1, value.astype("<f4").tobytes()))
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in value)))  # Int64List, packed


def example(features: dict[str, list[bytes] | np.ndarray]) -> bytes:
    """Serialized ``tf.train.Example`` (map entries: key = 1, value = 2)."""
    entries = b"".join(_field(1, _field(1, k.encode()) + _field(2, _feature(v))) for k, v in features.items())
    return _field(1, entries)


def record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(crc32c(length))) + data + struct.pack("<I", masked(crc32c(data)))


def _jpeg(img: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def bridge_action(episode: int, t: int) -> np.ndarray:
    return 1000.0 * episode + 10.0 * t + np.arange(7, dtype=np.float32)


def episode_features(episode: int, length: int, text: str) -> dict[str, list[bytes] | np.ndarray]:
    actions = np.stack([bridge_action(episode, t) for t in range(length - 1)] + [np.zeros(7, np.float32)])
    feats: dict[str, list[bytes] | np.ndarray] = {}
    for cam in range(4):
        feats[f"steps/observation/image_{cam}"] = [_jpeg(pattern(t, episode, cam + 1)) for t in range(length)]
    feats["steps/observation/state"] = -actions[:, :7].ravel().astype(np.float32)
    feats["steps/action"] = actions.ravel().astype(np.float32)
    feats["steps/is_first"] = np.array([t == 0 for t in range(length)], np.int64)
    feats["steps/is_last"] = np.array([t == length - 1 for t in range(length)], np.int64)
    feats["steps/language_instruction"] = [text.encode()] * length
    feats["episode_metadata/file_path"] = [f"/raw/traj{episode}".encode()]
    for cam in range(4):
        feats[f"episode_metadata/has_image_{cam}"] = np.array([1], np.int64)
    feats["episode_metadata/has_language"] = np.array([1], np.int64)
    return feats


def _tensor(shape: list[int], dtype: str) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": dtype, "encoding": "none"}}


def _image() -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
            "image": {"shape": {"dimensions": ["64", "64", "3"]}, "dtype": "uint8", "encodingFormat": "jpeg"}}


def _dict(features: dict) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": features}}


def write_bridge_rlds(root: Path) -> Path:
    """``root/bridge_dataset/1.0.0/`` with two train shards; returns the version folder."""
    folder = root / "bridge_dataset" / "1.0.0"
    folder.mkdir(parents=True)
    for i, eps in enumerate(SHARDS):
        blob = b"".join(record(example(episode_features(*EPISODES[e]))) for e in eps)
        (folder / f"bridge_dataset-train.tfrecord-{i:05d}-of-{len(SHARDS):05d}").write_bytes(blob)
    scalar_bool = _tensor([], "bool")
    steps = _dict({
        "observation": _dict({**{f"image_{c}": _image() for c in range(4)}, "state": _tensor([7], "float32")}),
        "action": _tensor([7], "float32"), "is_first": scalar_bool, "is_last": scalar_bool,
        "language_instruction": {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text",
                                 "text": {}}})
    features = _dict({
        "steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                  "sequence": {"feature": steps, "length": "-1"}},
        "episode_metadata": _dict({"file_path": {"pythonClassName":
                                                 "tensorflow_datasets.core.features.text_feature.Text", "text": {}},
                                   **{f"has_image_{c}": scalar_bool for c in range(4)},
                                   "has_language": scalar_bool})})
    (folder / "features.json").write_text(json.dumps(features, indent=2))
    info = {"name": "bridge_dataset", "version": "1.0.0", "fileFormat": "tfrecord", "moduleName": "bridge_dataset",
            "splits": [{"name": "train", "shardLengths": [str(len(s)) for s in SHARDS],
                        "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"}]}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder
