"""Normalisers and the LIBERO-layout demo reader."""

import json

import h5py
import numpy as np
import pytest
import torch
from avbr.adapters.vla.data import SYNTHETIC_TASKS, LiberoDemoDataset
from avbr.adapters.vla.normalize import Normalizer
from avbr.envs.demos import DemoFileError


@pytest.mark.parametrize("mode", ["q01_q99", "mean_std"])
def test_normalizer_round_trip_and_mask(mode: str) -> None:
    x = torch.randn(500, 7) * 3 + 1
    n = Normalizer.fit(x, mode, [True] * 6 + [False])
    y = n.normalize(x)
    assert torch.equal(y[:, 6], x[:, 6])  # masked dim passes through
    inside = (x[:, :6] > n.low[:6]) & (x[:, :6] < n.high[:6]) if mode == "q01_q99" else torch.ones(500, 6, dtype=torch.bool)
    back = n.unnormalize(y)
    assert torch.allclose(back[:, :6][inside], x[:, :6][inside], atol=1e-4)
    if mode == "q01_q99":
        assert y[:, :6].abs().max() <= 1.0
    assert Normalizer.from_dict(json.loads(json.dumps(n.to_dict()))).to_dict() == n.to_dict()


def test_dataset_layout_padding_and_flip(demo_files, dataset: LiberoDemoDataset) -> None:
    assert sorted(set(dataset.instructions)) == sorted(SYNTHETIC_TASKS)
    assert len(dataset) == 2 * 2 * 8
    s = dataset[7]  # last step of the first episode
    assert s["prev"].dtype == torch.uint8 and s["curr"].shape == (32, 32, 3)
    assert s["state"].shape == (8,) and s["actions"].shape == (4, 7)
    assert s["action_is_pad"].tolist() == [False, True, True, True]
    assert torch.equal(s["actions"][1], s["actions"][0])  # padded steps repeat the last action
    assert torch.equal(dataset[0]["prev"], dataset[0]["curr"])  # t = 0: prev clamps to the first frame
    with h5py.File(demo_files[0]) as f:
        raw = f["data/demo_0/obs/agentview_rgb"][3]
    assert np.array_equal(dataset[3]["curr"].numpy(), raw[::-1, ::-1])  # stored upside down, read upright


def test_dataset_names_missing_keys(demo_files) -> None:
    with pytest.raises(DemoFileError, match="no camera 'eye_in_hand_rgb'"):
        LiberoDemoDataset(demo_files, chunk=2, camera="eye_in_hand_rgb")
    with pytest.raises(DemoFileError, match="lacks"):
        LiberoDemoDataset(demo_files, chunk=2, state_keys=("joint_states",))


def test_compact_copy_reads_the_same(demo_files, dataset: LiberoDemoDataset, tmp_path) -> None:
    from avbr.adapters.vla.data import compact_demo_file

    copies = [compact_demo_file(p, tmp_path / p.name) for p in demo_files]
    again = LiberoDemoDataset(copies, chunk=4)
    assert again.instructions == dataset.instructions
    for i in (0, 13, 31):
        a, b = dataset[i], again[i]
        assert all(torch.equal(a[k], b[k]) for k in ("prev", "curr", "state", "actions", "action_is_pad"))
    with h5py.File(copies[0]) as f:
        assert f["data/demo_0/obs/agentview_rgb"].compression == "gzip"
