"""Bridge V2 raw reader against the official converter's semantics
(rail-berkeley/bridge_data_v2 ``data_processing/bridgedata_raw_to_numpy.py``, ``process_dc``):
step ``j`` = (image ``j``, ``full_state[j]``, action ``j``); collections dated before 2021-07-23 drop
the first observation and the last action, so step ``j`` = (image ``j+1``, ``full_state[j+1]``,
action ``j``). Fixtures carry index patterns (see ``write_bridge_traj``) so every pairing is checked."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from pair_fixtures import write_bridge_traj

from avbr.data import BridgeSource, CorruptFileError, EpisodeRef
from avbr.data.bridge import collection_date

T = 6  # images per trajectory


def grey(img: np.ndarray) -> float:
    return float(img[-4:, -4:].mean())  # away from the red marker


def _converter_steps(length: int, shifted: bool) -> list[tuple[int, int, int]]:
    """(image, full_state row, action) indices of each step, written out from process_dc:
    observations = images[:-1] (next: images[1:]), actions = policy_out (T-1 of them); with the
    latency shift observations[1:] and actions[:-1]."""
    obs = list(range(length - 1))
    acts = list(range(length - 1))
    if shifted:
        obs, acts = obs[1:], acts[:-1]
    return [(o, o, a) for o, a in zip(obs, acts)]


def _source(tmp_path, date: str, **kw) -> tuple[BridgeSource, EpisodeRef]:
    write_bridge_traj(tmp_path / "toykitchen1" / "put_x" / date / "raw" / "traj_group0" / "traj0", length=T)
    src = BridgeSource(str(tmp_path), **kw)
    return src, src.episodes()[0]


@pytest.mark.parametrize("date, shifted", [("2021-06-15_14-02-11", True), ("2021-07-22_23-59-59", True),
                                           ("2021-07-23_00-00-00", False), ("2022-05-01_10-00-00", False)])
def test_steps_pair_as_the_converter(tmp_path, date: str, shifted: bool) -> None:
    src, ref = _source(tmp_path, date)
    steps = _converter_steps(T, shifted)
    assert src.shift(ref) == int(shifted)
    assert src.episode_length(ref) == len(steps) + 1  # the last step's next observation is a frame too
    assert len(src.actions(ref)) == len(steps)
    for t, (image, state, action) in enumerate(steps):
        for k in range(1, src.episode_length(ref) - t):
            s = src.read_pair(ref, t, k)
            assert abs(grey(s["prev"]) - 20 * image) < 2 and abs(grey(s["curr"]) - 20 * (image + k)) < 2
            assert s["state"].tolist() == [100.0 + state] * 7  # full_state, not state
            if t + k <= len(steps):
                assert s["action"].tolist() == [float(action)] * 7
                assert s["actions"][:, 0].tolist() == [float(action + i) for i in range(k)]
            else:
                assert "action" not in s


def test_shift_can_be_turned_off(tmp_path) -> None:
    src, ref = _source(tmp_path, "2021-06-15_14-02-11", latency_shift=False)
    assert src.shift(ref) == 0 and src.episode_length(ref) == T and len(src.actions(ref)) == T - 1
    s = src.read_pair(ref, 0, 1)
    assert abs(grey(s["prev"])) < 2 and s["action"].tolist() == [0.0] * 7 and s["state"].tolist() == [100.0] * 7


def test_undated_layout_needs_an_explicit_choice(tmp_path) -> None:
    write_bridge_traj(tmp_path / "raw" / "traj_group0" / "traj0", length=T)
    with pytest.raises(ValueError, match=r"not in a dated collection folder.*latency_shift=false"):
        BridgeSource(str(tmp_path))
    src = BridgeSource(str(tmp_path), latency_shift=False)
    assert src.episode_length(src.episodes()[0]) == T


def test_collection_date_reads_the_folder_above_raw(tmp_path) -> None:
    traj = tmp_path / "2021-07-01_09-30-00" / "raw" / "traj_group3" / "traj12"
    assert collection_date(str(traj)).isoformat() == "2021-07-01T09:30:00"
    assert collection_date(str(tmp_path / "2021-07-01_09-30-00" / "traj_group3" / "traj12")) is None  # no raw/
    assert collection_date(str(tmp_path / "notadate" / "raw" / "traj_group3" / "traj12")) is None


def test_obs_dict_without_full_state_is_reported(tmp_path) -> None:
    src, ref = _source(tmp_path, "2022-05-01_10-00-00")
    path = tmp_path / "toykitchen1" / "put_x" / "2022-05-01_10-00-00" / "raw" / "traj_group0" / "traj0" / "obs_dict.pkl"
    path.write_bytes(pickle.dumps({"state": np.zeros((T, 7))}))
    with pytest.raises(CorruptFileError, match="full_state"):
        src.read_pair(ref, 0, 1)
