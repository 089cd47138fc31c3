"""VideoMAE: ours (a 2-frame VideoMAEForPreTraining folder) and the transformers format."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEModel

from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder


def _config(tiny_hf: dict, num_frames: int) -> VideoMAEConfig:
    return VideoMAEConfig(
        **tiny_hf, image_size=32, patch_size=16, num_frames=num_frames, tubelet_size=2, qkv_bias=True,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
    )


@pytest.fixture
def ours_dir(tmp_path, tiny_hf):
    """What the pretraining code writes: VideoMAEForPreTraining.save_pretrained, 2 frames."""
    model = VideoMAEForPreTraining(_config(tiny_hf, num_frames=2)).eval()
    with torch.no_grad():  # non-zero q/v biases so that their on-disk renaming is exercised
        for layer in model.videomae.encoder.layer:
            layer.attention.attention.query.bias.normal_()
            layer.attention.attention.value.bias.normal_()
    model.save_pretrained(tmp_path / "vmae")
    return model, tmp_path / "vmae"


def test_ours_matches_transformers(ours_dir, make_frames) -> None:
    model, directory = ours_dir
    enc = build_encoder(EncoderConfig(name="videomae_ours", source=str(directory), device="cpu"))
    prev, curr = make_frames(2, 32, 32, seed=1), make_frames(2, 32, 32, seed=2)
    feats = enc.encode(prev, curr)
    clip = torch.stack([enc.preprocess(prev), enc.preprocess(curr)], dim=1)  # one tubelet (prev, curr)
    with torch.no_grad():
        tokens = model.videomae(pixel_values=clip).last_hidden_state  # [B, 1 * N, D]
    assert feats.grid == (2, 2)
    torch.testing.assert_close(feats.patches, tokens, atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.cls, tokens.mean(1), atol=1e-4, rtol=0)


def test_hf_format_repeats_frames(tmp_path, tiny_hf, make_frames) -> None:
    """A bare VideoMAEModel with 4 frames sees (prev, prev, curr, curr); patches average time."""
    model = VideoMAEModel(_config(tiny_hf, num_frames=4)).eval()
    model.save_pretrained(tmp_path / "hf")
    enc = build_encoder(EncoderConfig(name="videomae", source=str(tmp_path / "hf"), device="cpu"))
    prev, curr = make_frames(2, 32, 32, seed=3), make_frames(2, 32, 32, seed=4)
    p, c = enc.preprocess(prev), enc.preprocess(curr)
    with torch.no_grad():
        tokens = model(pixel_values=torch.stack([p, p, c, c], dim=1)).last_hidden_state  # [B, 2 * N, D]
    feats = enc.encode(prev, curr)
    torch.testing.assert_close(feats.patches, tokens.reshape(2, 2, 4, 32).mean(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.cls, tokens.mean(1), atol=1e-4, rtol=0)


def test_frames_both_rejected_for_two_frame_encoder(ours_dir) -> None:
    with pytest.raises(ValueError, match="already takes"):
        build_encoder(EncoderConfig(name="videomae_ours", source=str(ours_dir[1]), frames="both", device="cpu"))


def test_strict_names_missing_key(ours_dir) -> None:
    _, directory = ours_dir
    sd = load_file(directory / "model.safetensors")
    del sd["videomae.encoder.layer.0.attention.attention.q_bias"]
    save_file(sd, directory / "model.safetensors")
    with pytest.raises(StrictLoadError, match=r"encoder\.layer\.0\.attention\.attention\.query\.bias"):
        build_encoder(EncoderConfig(name="videomae_ours", source=str(directory), device="cpu"))


def test_loads_what_our_pretraining_exports(tmp_path, make_frames) -> None:
    """``avbr.objectives.VideoMAE.export_encoder`` writes a bare VideoMAEModel folder."""
    from avbr.objectives import build_objective

    objective = build_objective("videomae", encoder_kwargs=dict(preset="tiny", depth=3, img_size=32, patch_size=16)).eval()
    objective.export_encoder(tmp_path / "enc")
    enc = build_encoder(EncoderConfig(name="videomae_ours", source=str(tmp_path / "enc"), device="cpu"))
    prev, curr = make_frames(2, 32, 32, seed=5), make_frames(2, 32, 32, seed=6)
    with torch.no_grad():
        tokens = objective.encoder(pixel_values=torch.stack([enc.preprocess(prev), enc.preprocess(curr)], 1)).last_hidden_state
    torch.testing.assert_close(enc.encode(prev, curr).patches, tokens, atol=1e-4, rtol=0)
