"""Reading weights: safetensors, torch pickles through ``torch.load(weights_only=True)`` (single and
sharded ``pytorch_model.bin``, timm ``.pth``, R3M ``model.pt``), and the errors for pickles that
need code and for files that are not checkpoints."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, Dinov2Model

from avbr.adapters import EncoderConfig, build_encoder
from avbr.adapters.hub import WeightsFormatError, WeightsNotFoundError, read_state_dict

TINY_DINO = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=14, image_size=518)
TINY_TIMM = dict(embed_dim=32, depth=1, num_heads=2)


class NeedsCode:
    """A class that only exists in this test module: unpickling it would import code."""


@pytest.fixture
def dino_bin_dir(tmp_path):
    """A save_pretrained folder in the pre-safetensors layout: config.json + pytorch_model.bin."""
    model = Dinov2Model(Dinov2Config(**TINY_DINO)).eval()
    model.save_pretrained(tmp_path / "d")
    sd = load_file(tmp_path / "d" / "model.safetensors")
    (tmp_path / "d" / "model.safetensors").unlink()
    torch.save(sd, tmp_path / "d" / "pytorch_model.bin")
    return model, tmp_path / "d", sd


def test_hf_folder_with_pytorch_model_bin(dino_bin_dir, make_frames) -> None:
    model, directory, _ = dino_bin_dir
    enc = build_encoder(EncoderConfig(name="dinov2_hf", source=str(directory), img_size=56, device="cpu"))
    x = make_frames(2, 56, 56)
    with torch.no_grad():
        ref = model(pixel_values=enc.preprocess(x)).last_hidden_state
    torch.testing.assert_close(enc.encode(None, x).cls, ref[:, 0], atol=1e-4, rtol=0)


def test_sharded_bin_index_reads_every_shard(dino_bin_dir) -> None:
    _, directory, sd = dino_bin_dir
    keys = sorted(sd)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2], "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :]}
    for name, ks in halves.items():
        torch.save({k: sd[k] for k in ks}, directory / name)
    (directory / "pytorch_model.bin").unlink()
    index = {"metadata": {}, "weight_map": {k: name for name, ks in halves.items() for k in ks}}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    got = read_state_dict(directory)
    assert sorted(got) == keys
    assert all(torch.equal(got[k], sd[k]) for k in keys)


def test_timm_pth_file_and_bin_folder(tmp_path, make_frames) -> None:
    src = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10, img_size=32, **TINY_TIMM).eval()
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    (tmp_path / "hub").mkdir()
    torch.save(src.state_dict(), tmp_path / "hub" / "pytorch_model.bin")
    x = make_frames(2, 32, 32)
    with torch.no_grad():
        ref = src.forward_features(torch.zeros(1, 3, 32, 32))
    for source in (tmp_path / "vit.pth", tmp_path / "hub"):
        enc = build_encoder(EncoderConfig(name="timm_vit", source=str(source), img_size=32, model_kwargs=TINY_TIMM, device="cpu"))
        with torch.no_grad():
            torch.testing.assert_close(enc.model.forward_features(torch.zeros(1, 3, 32, 32)), ref, atol=1e-5, rtol=0)
            tokens = src.forward_features(enc.preprocess(x))
        torch.testing.assert_close(enc.encode(None, x).cls, tokens[:, 0], atol=1e-4, rtol=0)


def test_pickle_that_needs_code_names_file_and_conversion(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"r3m": {"w": torch.zeros(2)}, "cfg": NeedsCode()}, path)
    with pytest.raises(WeightsFormatError) as err:
        read_state_dict(path)
    msg = str(err.value)
    assert str(path) in msg and "NeedsCode" in msg and "weights_only=True" in msg
    assert "save_file" in msg and str(tmp_path / "model.safetensors") in msg


def test_not_a_checkpoint_says_so(tmp_path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"<html>rate limited</html>" * 20)
    with pytest.raises(WeightsFormatError, match=r"pytorch_model\.bin is not a readable torch checkpoint.*download it again"):
        read_state_dict(path)


def test_folder_without_weights_lists_what_it_looked_for(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"model\.safetensors.*pytorch_model\.bin"):
        read_state_dict(tmp_path)


def test_r3m_pickle_and_converted_safetensors_agree(tmp_path, make_frames) -> None:
    """R3M's model.pt (read with weights_only=True) and the safetensors file the error message tells
    users to write (the checkpoint's "r3m" entry) load the same weights."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    state = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    torch.save({"r3m": state}, tmp_path / "model.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    x = make_frames(1, 224, 224)
    out = [
        build_encoder(EncoderConfig(name="r3m", arch="resnet18", source=str(tmp_path / f), device="cpu")).encode(None, x).cls
        for f in ("model.pt", "model.safetensors")
    ]
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)


def test_hf_bin_that_needs_code_points_at_model_safetensors(dino_bin_dir) -> None:
    """For a save_pretrained folder the conversion target is the folder's model.safetensors, which
    the folder then loads without further changes."""
    _, directory, sd = dino_bin_dir
    torch.save({**sd, "config": NeedsCode()}, directory / "pytorch_model.bin")
    with pytest.raises(WeightsFormatError, match=str(directory / "model.safetensors")):
        build_encoder(EncoderConfig(name="dinov2_hf", source=str(directory), device="cpu"))
