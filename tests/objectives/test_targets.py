"""Future prediction's targets and what pretraining exports.

- Every parameter of an exported encoder reaches the loss (issue 15, part 1): before the fused CLS
  conditioned the decoder, ``cls_fusion`` and the last CLS exchange's P->M message got no gradient
  in future prediction and were exported at their random initial values.
- ``target: extrapolate`` predicts a frame that is not an input (issue 15, part 2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbr.data import GapSchedule, PairMixture, ProceduralStillSource, ProceduralVideoSource, collate_pairs
from avbr.models.fusion import CLS_FUSIONS, PIXEL_FUSIONS
from avbr.objectives import build_objective, frames_to_float
from avbr.objectives.future_prediction import TARGETS

TINY = {"preset": "tiny", "img_size": 32, "patch_size": 8, "depth": 3}
DECODER = {"width": 32, "min_width": 16}


def triples(n: int, size: int = 32, seed: int = 0, still_ratio: float = 0.3, episode_seed: int = 0,
            gap: GapSchedule | None = None) -> tuple:
    """``(prev, curr, gap, is_still, future)`` from procedural videos (+ stills), frames ``(t, t+k, t+2k)``,
    ``k`` drawn from ``gap`` (default: ``GapSchedule()``)."""
    mix = PairMixture(
        [ProceduralVideoSource(gap=gap, num_episodes=1000, size=size, seed=episode_seed),
         ProceduralStillSource(gap=gap, num_episodes=1000, size=size, seed=episode_seed + 1_000_000)],
        [1, 1], img_size=size, still_ratio=still_ratio, seed=seed, frames=3,
    )
    b = collate_pairs([mix[g] for g in range(n)])
    return frames_to_float(b["prev"]), frames_to_float(b["curr"]), b["gap"], b["is_still"], frames_to_float(b["future"])


def untrained_exported(objective, steps: int = 3) -> set[str]:
    """Names of exported-encoder parameters whose gradient was zero (or absent) in every one of ``steps`` AdamW steps."""
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)
    reached = {name: False for name, _ in objective.encoder.named_parameters()}
    for step in range(steps):
        prev, curr, gap, still, future = triples(4, seed=step)
        out = objective(prev, curr, gap, still, torch.Generator().manual_seed(step), future)
        opt.zero_grad()
        out["loss"].backward()
        for name, p in objective.encoder.named_parameters():
            reached[name] |= p.grad is not None and bool(p.grad.abs().sum() > 0)
        opt.step()
    return {name for name, ok in reached.items() if not ok}


FUSIONS = [(pf, cf) for pf in PIXEL_FUSIONS.names() for cf in CLS_FUSIONS.names() if pf != "shared" or cf == "linear"]


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("pixel_fusion,cls_fusion", FUSIONS)
def test_future_prediction_trains_every_exported_parameter(pixel_fusion, cls_fusion, target) -> None:
    torch.manual_seed(0)
    obj = build_objective(
        "future_prediction", encoder_kwargs={**TINY, "pixel_fusion": pixel_fusion, "cls_fusion": cls_fusion},
        decoder_kwargs=DECODER, params={"target": target},
    )
    assert untrained_exported(obj) == set()


@pytest.mark.parametrize("encoder,kwargs", [("two_stream", {"mode": "separate"}), ("single_stream", {}), ("p_only", {})])
def test_other_encoders_train_every_exported_parameter(encoder, kwargs) -> None:
    torch.manual_seed(0)
    obj = build_objective("future_prediction", encoder=encoder, encoder_kwargs={**TINY, **kwargs}, decoder_kwargs=DECODER)
    assert untrained_exported(obj) == set()


def test_videomae_and_dino_exports() -> None:
    """VideoMAE's exported ``VideoMAEModel`` is trained entirely. DINO-temporal reads only the
    encoder's ``cls``, so the two-stream encoder's pixel-wise patch fusion is exported untrained
    (known, documented in the README: use the ``cls`` readout, or ``pixel_fusion: shared``)."""
    torch.manual_seed(0)
    vm = build_objective("videomae", encoder_kwargs=TINY, decoder_kwargs={
        "decoder_num_hidden_layers": 1, "decoder_hidden_size": 64, "decoder_intermediate_size": 128,
        "decoder_num_attention_heads": 2})
    assert untrained_exported(vm) == set()
    dino_params = {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "n_local": 1}
    dino = build_objective("dino_temporal", encoder_kwargs=TINY, params=dino_params)
    assert untrained_exported(dino) == {"pixel_fusion.proj.weight", "pixel_fusion.proj.bias"}
    shared = build_objective("dino_temporal", encoder_kwargs={**TINY, "pixel_fusion": "shared"}, params=dino_params)
    assert untrained_exported(shared) == set()


def test_targets_choose_inputs_skip_and_target() -> None:
    torch.manual_seed(0)
    prev, curr, gap, still, future = triples(4)
    gap = gap.clamp_min(1)
    seed = build_objective("future_prediction", encoder_kwargs=TINY, decoder_kwargs=DECODER, params={"target": "seed"})
    extra = build_objective("future_prediction", encoder_kwargs=TINY, decoder_kwargs=DECODER)  # the default
    assert (seed.frames_per_sample, extra.frames_per_sample) == (2, 3) and extra.cfg.target == "extrapolate"
    w = extra.gap_weights[gap]
    with torch.no_grad():
        # extrapolate: encoder (img_{t-k}, img_t), skip img_t, target img_{t+k}
        pred, _ = extra.model(prev, curr, curr)
        expected = ((pred - future).pow(2).mean((1, 2, 3)) * w).mean()
        torch.testing.assert_close(extra(prev, curr, gap, still, None, future)["loss"], expected)
        # seed: encoder (img_t, img_{t+k}), skip img_t, target img_{t+k}; the future frame is not used
        pred, _ = seed.model(prev, curr, prev)
        expected = ((pred - curr).pow(2).mean((1, 2, 3)) * w).mean()
        torch.testing.assert_close(seed(prev, curr, gap, still, None, future)["loss"], expected)
        torch.testing.assert_close(seed(prev, curr, gap, still, None, None)["loss"], expected)
    with pytest.raises(ValueError, match="triples"):
        extra(prev, curr, gap, still, None, None)
    with pytest.raises(ValueError, match="extrapolate"):
        build_objective("future_prediction", encoder_kwargs=TINY, params={"target": "copy"})


#: The motion test's gaps: 1..4 drawn uniformly and weighted equally, so that training minimises
#: the unweighted held-out MSE the test scores (for data and loss weights alike).
MOTION_GAPS = GapSchedule(max_gap=4, sample_decay=1.0, loss_decay=1.0)


def heldout_mse(encoder: str, target: str, steps: int) -> float:
    """Train ``future_prediction`` (tiny, depth 3, 32 px, patch 8, batch 16, AdamW lr 1e-3 with
    20 warmup steps, 30% stills, gaps :data:`MOTION_GAPS`) on procedural episodes ``0..999`` on the
    CPU and return the unweighted MSE on 256 video samples of held-out episodes (seed 500000)."""
    torch.manual_seed(0)
    obj = build_objective(
        "future_prediction", encoder=encoder, encoder_kwargs={"preset": "tiny", "img_size": 32, "patch_size": 8, "depth": 3},
        gap=MOTION_GAPS, params={"target": target},
    )
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3, weight_decay=0.05)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 20)
        batch = triples(16, seed=step, gap=MOTION_GAPS)
        loss = obj(*batch[:4], None, batch[4])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    obj.eval()
    errs = []
    with torch.no_grad():
        for i in range(4):
            batch = triples(64, seed=10_000 + i, still_ratio=0.0, episode_seed=500_000, gap=MOTION_GAPS)
            errs.append(obj(*batch[:4], None, batch[4])["mse_video"].item())
    return float(np.mean(errs))


@pytest.mark.slow
def test_extrapolation_needs_the_motion_stream() -> None:
    """Procedural shapes move at constant velocity, so img_{t+k} follows from (img_{t-k}, img_t),
    but not from img_t alone: under ``extrapolate`` only an encoder that sees M can predict it.
    Under ``seed`` the target is an input and a P-only encoder does as well as the two-stream one.

    Sized for CI's 2-core CPU and always run there (CI reruns these numbers). Measured by this code
    on this project's 2-core CPU machine, one torch thread (pytest's default here): held-out MSE
    extrapolate: two_stream 0.00713, p_only 0.01026 (ratio 0.69; with another torch/data seed
    0.00707 vs 0.01038, ratio 0.68); seed: two_stream 0.00223, p_only 0.00236 (ratio 0.95). The
    whole test took 995 s while a LIBERO evaluation shared the machine (~210 s a model when two
    one-thread trainings ran side by side, one per core).
    An earlier 64 px, 1500-step, gaps-1..10 version measured ratio 0.72 on an H200 but 0.82 on
    CI's CPU (the margin did not survive the change of device, and it took 37 minutes there): with
    gaps up to 10 and weights ``0.5^(k-1)`` the unweighted held-out MSE was dominated by long gaps
    that training barely weighted, so the test now trains on what it scores. The issue's seed
    measurement was p_only 0.0042 vs two_stream 0.0040: under ``seed`` the motion stream buys
    nothing.
    """
    mse = {(e, t): heldout_mse(e, t, 2000) for e in ("two_stream", "p_only") for t in ("seed", "extrapolate")}
    assert mse["two_stream", "extrapolate"] < 0.8 * mse["p_only", "extrapolate"], mse
    assert mse["two_stream", "seed"] > 0.9 * mse["p_only", "seed"], mse  # no real gain from M when the target is an input
