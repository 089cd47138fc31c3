"""R3M: a checkpoint in R3M's layout loaded through the registry matches torchvision's ResNet."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.transforms import v2

from avbr.adapters import EncoderConfig, StrictLoadError, build_encoder


@pytest.fixture
def r3m_ckpt(tmp_path):
    """``{"r3m": DataParallel(R3M).state_dict()}``: ``module.convnet.*`` (no fc) + language heads."""
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    state["module.lang_rew.pred.0.weight"] = torch.zeros(4, 4)
    torch.save({"r3m": state, "global_step": 10}, tmp_path / "model.pt")
    return net.eval(), tmp_path / "model.pt"


def test_matches_torchvision(r3m_ckpt, make_frames) -> None:
    net, path = r3m_ckpt
    enc = build_encoder(EncoderConfig(name="r3m", arch="resnet18", source=str(path), device="cpu"))
    x = make_frames(2, 224, 224)
    feats = enc.encode(None, x)
    xn = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255.0)
    with torch.no_grad():
        emb = net(xn)
        fmap = torch.nn.Sequential(*list(net.children())[:-2])(xn)  # up to layer4
    assert feats.cls.shape == (2, 512) and feats.grid == (7, 7)
    torch.testing.assert_close(feats.cls, emb, atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.patches, fmap.flatten(2).transpose(1, 2), atol=1e-4, rtol=0)


def test_resize_as_r3m(r3m_ckpt, make_frames) -> None:
    """Non-224 frames: Resize(256) + CenterCrop(224) on 0-255 floats, as R3M.forward does."""
    enc = build_encoder(EncoderConfig(name="r3m", arch="resnet18", source=str(r3m_ckpt[1]), device="cpu"))
    x = make_frames(2, 240, 300)
    ref = v2.Compose([v2.Resize(256), v2.CenterCrop(224)])(torch.as_tensor(x).permute(0, 3, 1, 2).float())
    torch.testing.assert_close(enc.preprocess(x), ref, atol=1e-3, rtol=0)


def test_strict_names_missing_key(r3m_ckpt) -> None:
    _, path = r3m_ckpt
    ckpt = torch.load(path, weights_only=True)
    del ckpt["r3m"]["module.convnet.layer4.1.bn2.running_var"]
    torch.save(ckpt, path)
    with pytest.raises(StrictLoadError, match=r"convnet\.layer4\.1\.bn2\.running_var"):
        build_encoder(EncoderConfig(name="r3m", arch="resnet18", source=str(path), device="cpu"))


def test_missing_file_says_where_to_put_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="encoder.source="):
        build_encoder(EncoderConfig(name="r3m", source=str(tmp_path / "nope.pt"), device="cpu"))
