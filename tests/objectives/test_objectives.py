"""Each objective's loss falls on a tiny fixture; masking, crops and exports follow their contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbr.data import GapSchedule, PairMixture, ProceduralStillSource, ProceduralVideoSource, collate_pairs
from avbr.objectives import OBJECTIVES, build_objective, frames_to_float, tube_mask
from avbr.objectives.dino_temporal import _boxes, pair_crops

TINY = {"preset": "tiny", "img_size": 32, "patch_size": 8, "depth": 3}
SETTINGS = {
    "future_prediction": ({}, {"width": 32, "min_width": 16}),
    "videomae": ({}, {"decoder_num_hidden_layers": 1, "decoder_hidden_size": 64, "decoder_intermediate_size": 128,
                      "decoder_num_attention_heads": 2}),
    # A slow centre: on an 8-sample fixture the batch mean is close to every sample, and DINO's usual
    # 0.9 centre momentum flattens the teacher within a few steps (the loss then sits at log K).
    "dino_temporal": ({"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32, "n_local": 1, "center_momentum": 0.999}, {}),
}


def fixture_batch(n: int = 6) -> tuple[torch.Tensor, ...]:
    """Triples ``(prev, curr, gap, is_still, future)``: every objective takes them (pair objectives ignore ``future``)."""
    mix = PairMixture(
        [ProceduralVideoSource(num_episodes=8, size=32), ProceduralStillSource(num_episodes=8, size=32)],
        [1, 1], img_size=32, seed=0, frames=3,
    )
    b = collate_pairs([mix[g] for g in range(n)])
    return frames_to_float(b["prev"]), frames_to_float(b["curr"]), b["gap"], b["is_still"], frames_to_float(b["future"])


def build(name: str):
    params, dec = SETTINGS[name]
    torch.manual_seed(0)
    return build_objective(name, encoder_kwargs=TINY, decoder_kwargs=dec, gap=GapSchedule(), params=params)


def test_registry_and_wrong_options() -> None:
    assert set(OBJECTIVES.names()) == set(SETTINGS)
    with pytest.raises(KeyError, match="valid names"):
        build_objective("mae")
    with pytest.raises(TypeError, match="valid options: mask_ratio"):
        build_objective("videomae", encoder_kwargs=TINY, params={"ratio": 0.5})


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_loss_falls(name: str) -> None:
    obj = build(name)
    batch = fixture_batch()
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(30):
        out = obj(*batch[:4], torch.Generator().manual_seed(step % 2), batch[4])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        obj.after_step(step, 30)
        losses.append(out["loss"].item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_future_prediction_weights_gaps() -> None:
    obj = build("future_prediction")
    prev, curr, _, _, future = fixture_batch(2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        l1 = obj(prev, curr, torch.tensor([1, 1]), torch.tensor([False, False]), gen, future)["loss"]
        l3 = obj(prev, curr, torch.tensor([3, 3]), torch.tensor([False, False]), gen, future)["loss"]
    assert l3.item() == pytest.approx(0.25 * l1.item(), rel=1e-5)  # loss_decay^(3-1) = 0.25


def test_tube_mask_masks_the_same_patches_in_every_tubelet() -> None:
    m = tube_mask(4, 16, 3, 0.75, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert m.shape == (4, 48) and (m.sum(1) == 36).all()
    assert torch.equal(m[:, :16], m[:, 16:32]) and torch.equal(m[:, :16], m[:, 32:])
    assert not torch.equal(m[0], m[1])


def test_pair_crops_share_the_box() -> None:
    prev = torch.rand(2, 3, 32, 32)
    theta = torch.tensor([[[0.5, 0.0, 0.2], [0.0, 0.4, -0.3]]]).repeat(4, 1, 1)  # 2 views x 2 samples
    pv, cv = pair_crops(prev, prev + 0.25, theta, 16)
    assert pv.shape == (4, 3, 16, 16)
    torch.testing.assert_close(cv - pv, torch.full_like(pv, 0.25))


def test_dino_teacher_follows_student_by_ema() -> None:
    obj = build("dino_temporal")
    student = next(obj.student.parameters())
    teacher = next(obj.teacher.parameters())
    with torch.no_grad():
        student.add_(1.0)
    before = teacher.clone()
    obj.after_step(0, 100)  # momentum 0.996 at step 0
    torch.testing.assert_close(teacher, 0.996 * before + 0.004 * student)
    assert not any(p.requires_grad for p in obj.teacher.parameters())


def test_dino_centre_is_an_ema_of_teacher_global_outputs() -> None:
    obj = build("dino_temporal")
    c = obj.cfg
    prev, curr, gap, still, _ = fixture_batch(4)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)  # replay the objective's own draws
        theta = torch.cat([_boxes(c.n_global * 4, c.global_scale, c.flip_prob, prev.device, gen),
                           _boxes(c.n_local * 4, c.local_scale, c.flip_prob, prev.device, gen)])
        pv, cv = pair_crops(prev, curr, theta, 32)
        teacher_out = obj._embed(obj.teacher, pv[: c.n_global * 4], cv[: c.n_global * 4])  # [G*B, K]
        obj(prev, curr, gap, still, torch.Generator().manual_seed(0))
    torch.testing.assert_close(obj.center, (1 - c.center_momentum) * teacher_out.mean(0, keepdim=True))


def test_exports(tmp_path) -> None:
    from transformers import VideoMAEModel

    from avbr.models import load_encoder

    fp = build("future_prediction")
    fp.export_encoder(tmp_path / "fp")
    enc = load_encoder(tmp_path / "fp")
    assert not any(k.startswith("decoder") for k in enc.state_dict())
    torch.testing.assert_close(enc.state_dict(), fp.encoder.state_dict())
    vm = build("videomae")
    vm.export_encoder(tmp_path / "vm")
    loaded = VideoMAEModel.from_pretrained(tmp_path / "vm")
    torch.testing.assert_close(loaded.state_dict(), vm.encoder.state_dict())
