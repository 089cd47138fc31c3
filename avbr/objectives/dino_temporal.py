"""DINO-temporal: self-distillation over multi-crop views of frame pairs (seed 002).

Every view is a *pair*: one crop box is drawn per view and applied to both frames, so the M
stream of the view sees the change inside that box. Per sample, ``n_global`` global boxes (area
fraction in ``global_scale``) and ``n_local`` local boxes (``local_scale``) are drawn, each with a
random aspect ratio in ``[3/4, 4/3]`` and a horizontal flip shared by the pair.

- The student (encoder + ``DINOHead``) sees every view; the teacher (an EMA copy, no gradients)
  sees the global views only.
- Loss: ``sum over teacher view i, student view v != i`` of
  ``-sum_K softmax((t_i - c) / tau_t) * log_softmax(s_v / tau_s)``, averaged over samples and
  pairs (DINO's cross-entropy).
- Centring: ``c <- m_c c + (1 - m_c) mean_batch(t)`` (mean over all ranks); sharpening: the low
  teacher temperature ``tau_t``.
- Teacher EMA: ``theta_t <- m theta_t + (1 - m) theta_s``, ``m`` following a cosine from
  ``ema_momentum`` to 1 over training.
- CLS fusion: the view embedding is the encoder's ``cls``; for the two-stream encoder that is its
  CLS-fusion module, chosen with ``encoder_kwargs.cls_fusion`` (``linear | mlp | cross_attention |
  gating``, ``avbr.models.fusion.CLS_FUSIONS``), seed 002's experimental options.

Encoders of ``avbr.models`` have a fixed input size (learned absolute position embeddings), so
local views are resampled to ``img_size`` too: they differ from global views by the area they
cover, not by their pixel count. ``n_local`` trades compute for more views.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from avbr.models import build_model
from avbr.objectives.base import OBJECTIVES, Objective, ObjectiveSpec

__all__ = ["DINOHead", "DinoTemporal", "DinoTemporalOptions", "pair_crops"]


class DINOHead(nn.Module):
    """DINO projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes.

    ``[B, D] -> [B, out_dim]``. The last layer's rows are L2-normalised at every call (DINO's
    ``norm_last_layer``: weight norm with the gain fixed to 1).

    Args:
        in_dim: encoder width ``D``.
        out_dim: number of prototypes ``K``.
        hidden_dim: MLP width.
        bottleneck_dim: width before the prototypes.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)  # [B, bottleneck]
        return F.linear(z, F.normalize(self.prototypes, dim=-1))  # [B, K]


def _boxes(
    n: int, scale: tuple[float, float], flip_prob: float, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Affine crop matrices ``[n, 2, 3]`` for ``F.affine_grid`` (random box, aspect, flip)."""
    u = torch.rand(n, 5, device=device, generator=generator)  # [n, (area, ratio, cx, cy, flip)]
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    fw = (area * log_r.exp()).sqrt().clamp(max=1.0)  # box width / image width
    fh = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (1 - fw) * (2 * u[:, 2] - 1)  # box centre in [-1, 1] coordinates, box kept inside
    cy = (1 - fh) * (2 * u[:, 3] - 1)
    sign = torch.where(u[:, 4] < flip_prob, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = fw * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = fh, cy
    return theta


def pair_crops(
    prev: torch.Tensor, curr: torch.Tensor, theta: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop both frames with the same boxes.

    Args:
        prev, curr: ``[B, 3, H, W]``.
        theta: ``[V * B, 2, 3]`` crop matrices, view-major (view ``v`` of sample ``b`` at ``v * B + b``).
        size: output side.

    Returns:
        ``(prev_views, curr_views)``, each ``[V * B, 3, size, size]``.
    """
    b = prev.shape[0]
    v = theta.shape[0] // b
    grid = F.affine_grid(theta, [v * b, 3, size, size], align_corners=False)  # [V*B, size, size, 2]
    pair = torch.cat([prev, curr], dim=1).repeat(v, 1, 1, 1)  # [V*B, 6, H, W], view-major
    out = F.grid_sample(pair, grid.to(pair.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :3], out[:, 3:]


@dataclass
class DinoTemporalOptions:
    """DINO-temporal options (DINO's defaults unless noted).

    Attributes:
        out_dim: prototypes ``K`` of the head.
        hidden_dim: head MLP width.
        bottleneck_dim: head bottleneck width.
        n_global: global views per sample (the teacher's views).
        n_local: local views per sample.
        global_scale: area fraction range of global boxes.
        local_scale: area fraction range of local boxes.
        flip_prob: probability of a horizontal flip of a view (shared by the pair).
        student_temp: ``tau_s``.
        teacher_temp: ``tau_t`` (sharpening).
        center_momentum: ``m_c`` of the centre EMA.
        ema_momentum: teacher EMA momentum at step 0 (cosine to 1).
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    n_global: int = 2
    n_local: int = 4
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    flip_prob: float = 0.5
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    center_momentum: float = 0.9
    ema_momentum: float = 0.996

    def __post_init__(self) -> None:
        if self.n_global < 2:
            raise ValueError(f"n_global must be >= 2 (the loss pairs different views), got {self.n_global}")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi <= 1, got {(lo, hi)}")


@OBJECTIVES.register("dino_temporal")
class DinoTemporal(Objective):
    """Student/teacher self-distillation on pair views (see the module docstring).

    Args:
        spec: ``encoder`` registry name and ``encoder_kwargs`` (``cls_fusion`` picks the CLS
            fusion); ``decoder_kwargs`` (no decoder) and ``gap`` (gaps are not weighted) are unused.
        cfg: ``DinoTemporalOptions``.
    """

    name = "dino_temporal"
    Config = DinoTemporalOptions

    def __init__(self, spec: ObjectiveSpec, cfg: DinoTemporalOptions) -> None:
        super().__init__()
        self.cfg = cfg
        enc = build_model(spec.encoder, **spec.encoder_kwargs)
        head = DINOHead(enc.embed_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim)
        self.student = nn.ModuleDict({"encoder": enc, "head": head})
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.img_size = enc.img_size

    @property
    def encoder(self) -> nn.Module:
        return self.student["encoder"]

    def _embed(self, net: nn.ModuleDict, prev: torch.Tensor, curr: torch.Tensor) -> torch.Tensor:
        return net["head"](net["encoder"](prev, curr).cls).float()  # [V*B, K]

    def forward(
        self,
        prev: torch.Tensor,
        curr: torch.Tensor,
        gap: torch.Tensor,
        is_still: torch.Tensor,
        generator: torch.Generator | None = None,
        future: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        c, b, dev = self.cfg, prev.shape[0], prev.device
        g_theta = _boxes(c.n_global * b, c.global_scale, c.flip_prob, dev, generator)  # [G*B, 2, 3]
        l_theta = _boxes(c.n_local * b, c.local_scale, c.flip_prob, dev, generator)  # [L*B, 2, 3]
        prev_v, curr_v = pair_crops(prev, curr, torch.cat([g_theta, l_theta]), self.img_size)  # [(G+L)*B, 3, S, S]
        student = self._embed(self.student, prev_v, curr_v).chunk(c.n_global + c.n_local)  # V x [B, K]
        with torch.no_grad():
            n_g = c.n_global * b
            teacher_out = self._embed(self.teacher, prev_v[:n_g], curr_v[:n_g])  # [G*B, K]
            targets = F.softmax((teacher_out - self.center) / c.teacher_temp, dim=-1).chunk(c.n_global)
        loss, n_terms = prev.new_zeros((), dtype=torch.float32), 0
        for i, q in enumerate(targets):
            for v, s in enumerate(student):
                if v == i:
                    continue
                loss = loss + torch.sum(-q * F.log_softmax(s / c.student_temp, dim=-1), dim=-1).mean()
                n_terms += 1
        self._update_center(teacher_out)
        entropy = -(targets[0] * targets[0].clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": loss / n_terms, "teacher_entropy": entropy}

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor) -> None:
        batch_center = teacher_out.mean(dim=0, keepdim=True)  # [1, K]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            batch_center /= dist.get_world_size()
        self.center.mul_(self.cfg.center_momentum).add_(batch_center, alpha=1 - self.cfg.center_momentum)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Teacher EMA with the cosine momentum schedule ``1 - (1 - m0) (cos(pi t / T) + 1) / 2``."""
        m = 1 - (1 - self.cfg.ema_momentum) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2
        t_params = list(self.teacher.parameters())
        s_params = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(t_params, m)
        torch._foreach_add_(t_params, s_params, alpha=1 - m)
