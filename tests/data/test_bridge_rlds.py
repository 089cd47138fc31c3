"""BridgeRLDSSource on a bridge_dataset fixture written from the upstream specs (tests/data/rlds_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest
from lerobot_fixtures import decode
from rlds_fixtures import EPISODES, SHARDS, bridge_action, crc32c, write_bridge_rlds

from avbr.data import CorruptFileError, build_source
from avbr.data.bridge_rlds import masked_crc32c, parse_example, read_record, record_offsets
from avbr.eval.probing.action_data import load_pairs


def test_crc32c_known_answers():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    for data in (b"", b"\x00" * 8, b"bridge_dataset"):
        assert masked_crc32c(data) == (((crc32c(data) >> 15) | (crc32c(data) << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_records_and_examples(tmp_path):
    folder = write_bridge_rlds(tmp_path)
    shard = str(sorted(folder.glob("*.tfrecord-*"))[0])
    offsets = record_offsets(shard)
    assert len(offsets) == len(SHARDS[0]) and offsets[0] == 0
    ex = parse_example(read_record(shard, offsets[1]))
    episode, length, text = EPISODES[1]
    assert len(ex["steps/observation/image_2"]) == length
    assert ex["steps/action"].shape == (length * 7,) and ex["steps/is_first"].tolist() == [1] + [0] * (length - 1)
    assert ex["steps/language_instruction"][0].decode() == text
    assert ex["episode_metadata/file_path"] == [b"/raw/traj1"]


@pytest.mark.parametrize("camera", [0, 3])
def test_every_pair(tmp_path, camera):
    write_bridge_rlds(tmp_path)
    src = build_source("bridge_rlds", str(tmp_path), camera=camera)
    refs = src.episodes()
    assert [r.key for r in refs] == ["0", "1", "0"] and len(src.units) == len(SHARDS)
    assert [src.episode_length(r) for r in refs] == [n for _, n, _ in EPISODES]
    for ref, (e, length, text) in zip(refs, EPISODES):
        for k in (1, 2):
            for t in range(length - k):
                s = src.read_pair(ref, t, k)
                assert decode(s["prev"]) == (t, e, camera + 1, True)
                assert decode(s["curr"]) == (t + k, e, camera + 1, True)
                np.testing.assert_array_equal(s["action"], bridge_action(e, t))
                np.testing.assert_array_equal(s["actions"], np.stack([bridge_action(e, t + j) for j in range(k)]))
                np.testing.assert_array_equal(s["state"], -bridge_action(e, t))
                assert s["task"] == text and s["source"] == "bridge_rlds"
                assert s["episode"].endswith(f"-of-{len(SHARDS):05d}:{ref.key}")


def test_action_probe_reads_bridge_rlds_by_name(tmp_path):
    write_bridge_rlds(tmp_path)
    pairs = load_pairs("bridge_rlds", str(tmp_path), gap=1)
    assert len(pairs) == sum(n - 1 for _, n, _ in EPISODES)
    assert set(pairs.task) == {text for _, _, text in EPISODES}
    for i in range(len(pairs)):
        t, e = decode(pairs.prev[i])[:2]
        assert t == pairs.t[i] and decode(pairs.curr[i])[:2] == (t + 1, e)
        np.testing.assert_array_equal(pairs.action[i], bridge_action(e, t))  # never the zero padding


def test_corrupt_record_is_detected(tmp_path):
    folder = write_bridge_rlds(tmp_path)
    shard = sorted(folder.glob("*.tfrecord-*"))[1]
    blob = bytearray(shard.read_bytes())
    blob[100] ^= 0xFF  # inside the data of the only record
    shard.write_bytes(bytes(blob))
    src = build_source("bridge_rlds", str(tmp_path))
    with pytest.raises(CorruptFileError, match="data CRC mismatch"):
        src.read_pair(src.episodes_in(str(shard))[0], 0, 1)
    shard.write_bytes(bytes(blob[:-3]))
    with pytest.raises(CorruptFileError, match="truncated"):
        build_source("bridge_rlds", str(tmp_path)).episodes_in(str(shard))  # a fresh index of the shard


def test_missing_camera_fails_early(tmp_path):
    write_bridge_rlds(tmp_path)
    with pytest.raises(KeyError, match="image_7"):
        build_source("bridge_rlds", str(tmp_path), camera=7)
