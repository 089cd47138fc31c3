"""Encoder-only checkpoints round-trip and load strictly."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from avbr.models import ENCODER_NAMES, build_model, load_encoder, save_encoder

TINY = dict(preset="tiny", img_size=32, patch_size=8, depth=3)


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_round_trip_gives_identical_outputs(tmp_path, name):
    enc = build_model(name, **TINY).eval()
    save_encoder(enc, tmp_path / "enc", extra={"step": 3})
    loaded = load_encoder(tmp_path / "enc").eval()
    x = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(*x).cls, loaded(*x).cls)
    spec = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert spec["name"] == name and spec["extra"] == {"step": 3}


def test_missing_key_is_named(tmp_path):
    save_encoder(build_model("two_stream", **TINY), tmp_path)
    state = load_file(str(tmp_path / "encoder.safetensors"))
    del state["p_vit.cls_token"]
    save_file(state, str(tmp_path / "encoder.safetensors"))
    with pytest.raises(KeyError, match="p_vit.cls_token"):
        load_encoder(tmp_path)


def test_missing_checkpoint_says_what_a_checkpoint_is(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_encoder"):
        load_encoder(tmp_path / "nowhere")
