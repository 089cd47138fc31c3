"""Pi0 (flow-matching VLA) on transformers' Gemma classes, with our encoder in place of SigLIP.

Route taken (issue 8): a faithful re-implementation, not lerobot as a dependency. lerobot 0.6.x
needs Python >= 3.12 and transformers < 5.6, and 0.4.x needs torch < 2.11, so neither can share
the core install (Python 3.11, torch 2.14, transformers 5.x). The module tree mirrors lerobot's
``policies/pi0/modeling_pi0.py`` (``PI0Pytorch``; read for facts only) so that lerobot-format
checkpoints load through :func:`convert_lerobot_pi0`.

Architecture (facts from lerobot ``modeling_pi0.py`` / ``configuration_pi0.py``):

* ``paligemma_with_expert.paligemma.model.language_model``: Gemma 2B (width 2048, depth 18,
  MLP 16384, 8 heads, 1 KV head, head_dim 256); ``paligemma_with_expert.gemma_expert.model``:
  the Gemma 300M action expert (width 1024, same depth/heads/head_dim, MLP 4096). The two share
  every attention layer: queries/keys/values of both token groups are concatenated per layer,
  each group keeps its own projections, norms and MLPs. RoPE positions are
  ``cumsum(pad_mask) - 1`` over the whole sequence.
* Prefix = image tokens then language tokens (``embed_tokens(ids) * sqrt(width)``), bidirectional
  among themselves. Suffix = one state token (``state_proj``) and ``chunk_size`` (50) action
  tokens (``action_in_proj`` of the noisy actions, concatenated with a sine-cosine embedding of
  the time, ``min_period 4e-3``, ``max_period 4.0``, through ``action_time_mlp_in`` -> SiLU ->
  ``action_time_mlp_out``). Block attention masks (``att_mask`` 0 = same block as the previous
  token, 1 = new block): prefix ``0...0``, state ``1``, actions ``1 0...0``. So the prefix never
  sees the suffix, the state token sees prefix + itself, the action tokens see everything.
* Flow matching: ``t ~ Beta(1.5, 1.0) * 0.999 + 0.001``, ``x_t = t * noise + (1 - t) * actions``,
  target ``u_t = noise - actions``, loss ``MSE(u_t, v_t)`` on the real action dimensions.
  Sampling integrates from ``t = 1`` (noise) to ``t = 0`` with Euler steps ``dt = -1 / 10``,
  reusing the prefix keys/values for every step.
* States and actions are zero-padded to 32 dims (``max_state_dim``, ``max_action_dim``);
  normalisation is mean/std for both (lerobot's ``normalization_mapping``).

Swap point: lerobot's ``embed_image`` (SigLIP + ``multi_modal_projector`` -> ``[B, 256, 2048]``)
is replaced by :class:`~avbr.adapters.vla.backbone.VisionTokens` (module name ``vision``): any
registry encoder (``backbone.encoder``) on the uint8 ``(prev, curr)`` frames with its own
preprocessing, average-pooled to at most ``backbone.max_tokens`` tokens, then an MLP to the Gemma
width. One camera (agentview) is used.

One deliberate difference from transformers' own ``GemmaModel.forward``: in transformers 5.x the
``embed_tokens`` module multiplies by ``sqrt(width)`` itself, while lerobot (written against 4.x)
multiplies the raw embedding. Here the raw embedding matrix is looked up and scaled exactly once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GemmaConfig, GemmaModel
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

from .backbone import BackboneConfig, VisionTokens, build_backbone
from .keymap import drop_prefixed, load_converted
from .normalize import Normalizer
from .policy import VLAPolicy


@dataclass(frozen=True)
class GemmaVariant:
    """Size of one Gemma tower (openpi's ``gemma.py`` names)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


GEMMA_VARIANTS: dict[str, GemmaVariant] = {
    # released sizes (lerobot get_gemma_config / openpi gemma.get_config)
    "gemma_2b": GemmaVariant(2048, 18, 16_384, 8, 1, 256),
    "gemma_300m": GemmaVariant(1024, 18, 4096, 8, 1, 256),
    # ours: small configurations for smoke runs and tests (same head layout, fewer/narrower layers)
    "gemma_small": GemmaVariant(512, 6, 2048, 8, 1, 64),
    "gemma_small_expert": GemmaVariant(256, 6, 1024, 8, 1, 64),
    "gemma_tiny": GemmaVariant(32, 2, 64, 2, 1, 16),
    "gemma_tiny_expert": GemmaVariant(16, 2, 32, 2, 1, 16),
}


@dataclass
class Pi0Config:
    """Pi0 hyper-parameters. Defaults are lerobot's ``PI0Config`` unless marked *ours*.

    Attributes:
        paligemma_variant: key of :data:`GEMMA_VARIANTS` for the VLM tower (``gemma_2b``).
        action_expert_variant: key of :data:`GEMMA_VARIANTS` for the action expert (``gemma_300m``).
        vocab_size: language vocabulary (PaliGemma: 257152); ``None`` = ``len(tokenizer)`` (*ours*,
            for tiny tokenizers).
        chunk_size: actions predicted per call (50).
        n_action_steps: actions of a chunk executed before re-planning (50).
        max_state_dim: states are zero-padded to this width (32).
        max_action_dim: actions are zero-padded to this width (32).
        action_dim: real action width, LIBERO 7 (*ours*: loss and outputs use these dims).
        state_dim: real state width, LIBERO 8 (*ours*).
        num_inference_steps: Euler steps of the flow (10).
        time_sampling_beta_alpha: Beta alpha of the training time (1.5).
        time_sampling_beta_beta: Beta beta (1.0).
        time_sampling_scale: ``t = beta * scale + offset`` (0.999).
        time_sampling_offset: (0.001).
        min_period: sine-cosine time embedding, shortest period (4e-3).
        max_period: longest period (4.0).
        tokenizer_max_length: language tokens, padded/truncated (48).
        frame_gap: env steps between ``prev`` and ``curr`` (*ours*, 1).
        backbone: the registry encoder that replaces SigLIP (*ours*).
    """

    paligemma_variant: str = "gemma_2b"
    action_expert_variant: str = "gemma_300m"
    vocab_size: int | None = 257_152
    chunk_size: int = 50
    n_action_steps: int = 50
    max_state_dim: int = 32
    max_action_dim: int = 32
    action_dim: int = 7
    state_dim: int = 8
    num_inference_steps: int = 10
    time_sampling_beta_alpha: float = 1.5
    time_sampling_beta_beta: float = 1.0
    time_sampling_scale: float = 0.999
    time_sampling_offset: float = 0.001
    min_period: float = 4e-3
    max_period: float = 4.0
    tokenizer_max_length: int = 48
    frame_gap: int = 1
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        for name in (self.paligemma_variant, self.action_expert_variant):
            if name not in GEMMA_VARIANTS:
                raise ValueError(f"unknown Gemma variant {name!r}; known: {sorted(GEMMA_VARIANTS)}")
        vlm, exp = GEMMA_VARIANTS[self.paligemma_variant], GEMMA_VARIANTS[self.action_expert_variant]
        for attr in ("depth", "num_heads", "num_kv_heads", "head_dim"):
            if getattr(vlm, attr) != getattr(exp, attr):
                raise ValueError(
                    f"the VLM and the action expert share every attention layer, so their {attr} must match "
                    f"({self.paligemma_variant}: {getattr(vlm, attr)}, {self.action_expert_variant}: {getattr(exp, attr)})"
                )
        if self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) cannot exceed chunk_size ({self.chunk_size})")
        if self.action_dim > self.max_action_dim or self.state_dim > self.max_state_dim:
            raise ValueError("action_dim/state_dim must not exceed max_action_dim/max_state_dim")


def _gemma_config(v: GemmaVariant, vocab_size: int) -> GemmaConfig:
    return GemmaConfig(
        hidden_size=v.width,
        intermediate_size=v.mlp_dim,
        num_hidden_layers=v.depth,
        num_attention_heads=v.num_heads,
        num_key_value_heads=v.num_kv_heads,
        head_dim=v.head_dim,
        vocab_size=vocab_size,
        hidden_act="gelu_pytorch_tanh",
    )


def make_att_2d_masks(pad_masks: Tensor, att_masks: Tensor) -> Tensor:
    """Block attention mask (big_vision convention, as in lerobot/openpi).

    Token ``i`` may attend token ``j`` iff ``cumsum(att)[j] <= cumsum(att)[i]`` and both are valid.

    Args:
        pad_masks: bool ``[B, N]``, true for real tokens.
        att_masks: int/bool ``[B, N]``, 1 where a new block starts.

    Returns:
        bool ``[B, N, N]`` (query, key).
    """
    cumsum = torch.cumsum(att_masks.long(), dim=1)  # [B, N]
    att_2d = cumsum[:, None, :] <= cumsum[:, :, None]  # [B, Nq, Nk]
    pad_2d = pad_masks[:, None, :] & pad_masks[:, :, None]  # [B, Nq, Nk]
    return att_2d & pad_2d


def sinusoidal_time_embedding(time: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """Sine-cosine embedding of scalar times: ``[B] -> [B, dim]`` (sin half, then cos half)."""
    if dim % 2:
        raise ValueError(f"time embedding width {dim} must be even")
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=time.device)
    period = min_period * (max_period / min_period) ** fraction  # [dim/2]
    angle = (2 * math.pi / period)[None, :] * time.double()[:, None]  # [B, dim/2]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).float()


class _PaliGemmaText(nn.Module):
    """PaliGemma minus its vision tower: ``model.language_model`` is a transformers ``GemmaModel``.

    The attribute path mirrors ``PaliGemmaForConditionalGeneration`` so that checkpoint keys
    (``paligemma.model.language_model.*``) keep their names.
    """

    def __init__(self, cfg: GemmaConfig) -> None:
        super().__init__()
        self.model = nn.ModuleDict({"language_model": GemmaModel(cfg)})


class PaliGemmaWithExpert(nn.Module):
    """The two Gemma towers and their shared-attention forward.

    Args:
        vlm: size of the VLM tower.
        expert: size of the action expert.
        vocab_size: VLM vocabulary.
    """

    def __init__(self, vlm: GemmaVariant, expert: GemmaVariant, vocab_size: int) -> None:
        super().__init__()
        self.paligemma = _PaliGemmaText(_gemma_config(vlm, vocab_size))
        self.gemma_expert = nn.ModuleDict({"model": GemmaModel(_gemma_config(expert, vocab_size))})
        self.gemma_expert["model"].embed_tokens = None  # the expert reads embeddings, never ids
        self.width = vlm.width

    @property
    def towers(self) -> tuple[GemmaModel, GemmaModel]:
        """(VLM language model, action expert)."""
        return self.paligemma.model["language_model"], self.gemma_expert["model"]

    def embed_language_tokens(self, tokens: Tensor) -> Tensor:
        """ids ``[B, L]`` -> ``[B, L, width]``, scaled by ``sqrt(width)`` once (see module doc)."""
        weight = self.towers[0].embed_tokens.weight
        return F.embedding(tokens, weight) * math.sqrt(self.width)

    def forward(
        self,
        inputs: list[Tensor | None],
        attention_mask: Tensor,
        position_ids: Tensor,
        past_kv: list[tuple[Tensor, Tensor]] | None = None,
        use_cache: bool = False,
    ) -> tuple[list[Tensor | None], list[tuple[Tensor, Tensor]] | None]:
        """Run both towers through their shared attention layers.

        Args:
            inputs: ``[prefix [B, Lp, Wv] | None, suffix [B, Ls, We] | None]``; the present groups
                are concatenated in this order along the sequence.
            attention_mask: bool ``[B, Lq, Lk]`` with ``Lq`` the present tokens and
                ``Lk = (cached tokens) + Lq``.
            position_ids: ``[B, Lq]`` RoPE positions.
            past_kv: per layer ``(k, v)`` ``[B, kv_heads, Lc, head_dim]`` of cached tokens.
            use_cache: return the per-layer ``(k, v)`` of the present tokens (after RoPE).

        Returns:
            ``(outputs, kv)``: ``outputs`` mirrors ``inputs`` (final-norm hidden states or ``None``),
            ``kv`` the cache when ``use_cache``.
        """
        towers = self.towers
        active = [(i, x) for i, x in enumerate(inputs) if x is not None]
        lengths = [x.shape[1] for _, x in active]
        ref_layer = towers[0].layers[0].self_attn
        b, head_dim = active[0][1].shape[0], ref_layer.head_dim
        # additive mask; a finite minimum keeps fully padded query rows from turning into NaN
        dtype = active[0][1].dtype
        bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
        bias = bias.masked_fill(~attention_mask, torch.finfo(dtype).min / 2)[:, None]  # [B, 1, Lq, Lk]
        hidden = [x for _, x in active]
        new_kv: list[tuple[Tensor, Tensor]] = []
        for li in range(len(towers[0].layers)):
            qs, ks, vs = [], [], []
            for (ti, _), h in zip(active, hidden, strict=True):
                layer = towers[ti].layers[li]
                x = layer.input_layernorm(h)
                shape = (b, x.shape[1], -1, head_dim)
                qs.append(layer.self_attn.q_proj(x).view(shape).transpose(1, 2))  # [B, nh, L, hd]
                ks.append(layer.self_attn.k_proj(x).view(shape).transpose(1, 2))  # [B, nkv, L, hd]
                vs.append(layer.self_attn.v_proj(x).view(shape).transpose(1, 2))  # [B, nkv, L, hd]
            q, k, v = torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2)
            cos, sin = towers[0].rotary_emb(v, position_ids)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if use_cache:
                new_kv.append((k, v))
            if past_kv is not None:
                k = torch.cat([past_kv[li][0], k], dim=2)  # [B, nkv, Lc + Lq, hd]
                v = torch.cat([past_kv[li][1], v], dim=2)
            att = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, scale=towers[0].layers[li].self_attn.scaling, enable_gqa=True
            )  # [B, nh, Lq, hd]
            att = att.transpose(1, 2).reshape(b, q.shape[2], -1)  # [B, Lq, nh * hd]
            outs, start = [], 0
            for (ti, _), h, n in zip(active, hidden, lengths, strict=True):
                layer = towers[ti].layers[li]
                h = h + layer.self_attn.o_proj(att[:, start : start + n])
                h = h + layer.mlp(layer.post_attention_layernorm(h))
                outs.append(h)
                start += n
            hidden = outs
        outputs: list[Tensor | None] = [None, None]
        for (ti, _), h in zip(active, hidden, strict=True):
            outputs[ti] = towers[ti].norm(h)
        return outputs, (new_kv if use_cache else None)


class Pi0Model(nn.Module):
    """Pi0 network: module names follow lerobot's ``PI0Pytorch`` (see :func:`convert_lerobot_pi0`).

    Args:
        cfg: :class:`Pi0Config`.
    """

    def __init__(self, cfg: Pi0Config) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("Pi0Model needs a resolved vocab_size (Pi0Policy derives it from the tokenizer)")
        self.cfg = cfg
        vlm, exp = GEMMA_VARIANTS[cfg.paligemma_variant], GEMMA_VARIANTS[cfg.action_expert_variant]
        self.paligemma_with_expert = PaliGemmaWithExpert(vlm, exp, cfg.vocab_size)
        self.vision = VisionTokens(build_backbone(cfg.backbone), vlm.width, cfg.backbone.max_tokens)
        self.state_proj = nn.Linear(cfg.max_state_dim, exp.width)
        self.action_in_proj = nn.Linear(cfg.max_action_dim, exp.width)
        self.action_out_proj = nn.Linear(exp.width, cfg.max_action_dim)
        self.action_time_mlp_in = nn.Linear(2 * exp.width, exp.width)
        self.action_time_mlp_out = nn.Linear(exp.width, exp.width)

    def embed_prefix(
        self, prev: Tensor, curr: Tensor, lang_tokens: Tensor, lang_masks: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Image tokens (the swapped encoder) then language tokens.

        Args:
            prev, curr: uint8 ``[B, H, W, 3]`` upright RGB (the encoder resizes and normalises).
            lang_tokens: ``[B, L]`` ids; lang_masks: bool ``[B, L]``.

        Returns:
            ``(embs [B, Ni + L, Wv], pad_masks [B, Ni + L], att_masks [B, Ni + L])``.
        """
        img = self.vision(prev, curr)  # [B, Ni, Wv]
        lang = self.paligemma_with_expert.embed_language_tokens(lang_tokens)  # [B, L, Wv]
        b, ni = img.shape[:2]
        pad = torch.cat([torch.ones(b, ni, dtype=torch.bool, device=img.device), lang_masks.bool()], dim=1)
        att = torch.zeros_like(pad, dtype=torch.long)  # one bidirectional block
        return torch.cat([img, lang.to(img.dtype)], dim=1), pad, att

    def embed_suffix(self, state: Tensor, noisy_actions: Tensor, time: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """State token then action tokens.

        Args:
            state: ``[B, max_state_dim]``; noisy_actions: ``[B, H, max_action_dim]``; time: ``[B]``.

        Returns:
            ``(embs [B, 1 + H, We], pad_masks [B, 1 + H], att_masks [B, 1 + H])``.
        """
        state_emb = self.state_proj(state)[:, None]  # [B, 1, We]
        action_emb = self.action_in_proj(noisy_actions)  # [B, H, We]
        time_emb = sinusoidal_time_embedding(
            time, action_emb.shape[-1], self.cfg.min_period, self.cfg.max_period
        ).to(action_emb.dtype)  # [B, We]
        x = torch.cat([action_emb, time_emb[:, None].expand_as(action_emb)], dim=2)  # [B, H, 2 We]
        x = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(x)))  # [B, H, We]
        b, h = x.shape[:2]
        embs = torch.cat([state_emb, x], dim=1)
        pad = torch.ones(b, 1 + h, dtype=torch.bool, device=x.device)
        att = torch.zeros(b, 1 + h, dtype=torch.long, device=x.device)
        att[:, :2] = 1  # state starts a block; the first action token starts another
        return embs, pad, att

    def sample_time(self, b: int, device: torch.device) -> Tensor:
        """``t ~ Beta(alpha, beta) * scale + offset``, ``[B]``."""
        beta = torch.distributions.Beta(
            torch.tensor(self.cfg.time_sampling_beta_alpha), torch.tensor(self.cfg.time_sampling_beta_beta)
        )
        return (beta.sample((b,)) * self.cfg.time_sampling_scale + self.cfg.time_sampling_offset).to(device)

    def forward(
        self,
        prev: Tensor,
        curr: Tensor,
        lang_tokens: Tensor,
        lang_masks: Tensor,
        state: Tensor,
        actions: Tensor,
        noise: Tensor | None = None,
        time: Tensor | None = None,
    ) -> Tensor:
        """Flow-matching training forward.

        Args:
            prev, curr: uint8 ``[B, H, W, 3]``.
            lang_tokens, lang_masks: ``[B, L]``.
            state: normalised, padded ``[B, max_state_dim]``.
            actions: normalised, padded ``[B, chunk, max_action_dim]``.
            noise: optional ``[B, chunk, max_action_dim]``; time: optional ``[B]``.

        Returns:
            per-element squared error ``[B, chunk, max_action_dim]`` (the caller masks and averages).
        """
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:
            time = self.sample_time(actions.shape[0], actions.device)
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        u_t = noise - actions
        pre_e, pre_pad, pre_att = self.embed_prefix(prev, curr, lang_tokens, lang_masks)
        suf_e, suf_pad, suf_att = self.embed_suffix(state, x_t, time)
        pad = torch.cat([pre_pad, suf_pad], dim=1)
        mask = make_att_2d_masks(pad, torch.cat([pre_att, suf_att], dim=1))  # [B, N, N]
        position_ids = torch.cumsum(pad.long(), dim=1) - 1
        (_, suffix_out), _ = self.paligemma_with_expert([pre_e, suf_e], mask, position_ids)
        v_t = self.action_out_proj(suffix_out[:, -self.cfg.chunk_size :])  # [B, chunk, max_action_dim]
        return F.mse_loss(v_t, u_t, reduction="none")

    @torch.no_grad()
    def sample_actions(
        self,
        prev: Tensor,
        curr: Tensor,
        lang_tokens: Tensor,
        lang_masks: Tensor,
        state: Tensor,
        noise: Tensor | None = None,
        num_steps: int | None = None,
    ) -> Tensor:
        """Euler integration of the flow from noise (``t = 1``) to actions (``t = 0``).

        Returns:
            normalised padded actions ``[B, chunk, max_action_dim]``.
        """
        num_steps = num_steps or self.cfg.num_inference_steps
        b = state.shape[0]
        if noise is None:
            noise = torch.randn(b, self.cfg.chunk_size, self.cfg.max_action_dim, device=state.device)
        pre_e, pre_pad, pre_att = self.embed_prefix(prev, curr, lang_tokens, lang_masks)
        pre_pos = torch.cumsum(pre_pad.long(), dim=1) - 1
        _, kv = self.paligemma_with_expert(
            [pre_e, None], make_att_2d_masks(pre_pad, pre_att), pre_pos, use_cache=True
        )
        offset = pre_pad.long().sum(dim=1, keepdim=True)  # [B, 1]
        dt = -1.0 / num_steps
        x_t = noise
        for step in range(num_steps):
            time = torch.full((b,), 1.0 + step * dt, device=state.device)
            suf_e, suf_pad, suf_att = self.embed_suffix(state, x_t, time)
            ls = suf_pad.shape[1]
            mask = torch.cat(
                [pre_pad[:, None, :].expand(b, ls, pre_pad.shape[1]), make_att_2d_masks(suf_pad, suf_att)], dim=2
            )  # [B, Ls, Lp + Ls]
            pos = offset + torch.cumsum(suf_pad.long(), dim=1) - 1
            (_, out), _ = self.paligemma_with_expert([None, suf_e], mask, pos, past_kv=kv)
            v_t = self.action_out_proj(out[:, -self.cfg.chunk_size :])
            x_t = x_t + dt * v_t
        return x_t


class Pi0Policy(VLAPolicy):
    """Pi0 behind the shared policy API (tokenisation, normalisation, padding, frame buffer).

    Args:
        cfg: :class:`Pi0Config`.
        tokenizer: PaliGemma's tokenizer (or a tiny one); lerobot's Pi0 processor appends a newline
            to the task text and pads to ``tokenizer_max_length``, as done here.
        state_norm, action_norm: mean/std :class:`Normalizer` (fitted on the training demos).
    """

    name = "pi0"

    def __init__(self, cfg: Pi0Config, tokenizer, state_norm: Normalizer, action_norm: Normalizer) -> None:
        if cfg.vocab_size is None:
            cfg = dataclasses.replace(cfg, vocab_size=len(tokenizer))
        if cfg.vocab_size < len(tokenizer):
            raise ValueError(f"vocab_size {cfg.vocab_size} < len(tokenizer) {len(tokenizer)}")
        super().__init__(cfg.frame_gap, cfg.n_action_steps)
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.state_norm, self.action_norm = state_norm, action_norm
        self.model = Pi0Model(cfg)

    @property
    def train_chunk(self) -> int:
        """Actions per training sample."""
        return self.cfg.chunk_size

    lora_target_regex = r"paligemma_with_expert\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """LoRA goes on every linear layer of both Gemma towers (openpi's LoRA variants do the same)."""

    def new_modules(self) -> list[str]:
        """Modules trained in full under LoRA (``modules_to_save``): the swapped encoder (unless
        ``backbone.freeze``), its projector, and the state/action/time projections, which openpi's
        LoRA fine-tuning also leaves trainable."""
        heads = ["vision.projector", "state_proj", "action_in_proj", "action_out_proj", "action_time_mlp_in", "action_time_mlp_out"]
        return ([] if self.cfg.backbone.freeze else ["vision.backbone"]) + heads

    def normalizers(self) -> dict[str, Normalizer]:
        """The fitted normalisers, by name (saved with checkpoints)."""
        return {"state": self.state_norm, "action": self.action_norm}

    def _prompt_and_state(self, state: Tensor, instructions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids ``[B, L]``, their mask ``[B, L]`` and the normalised padded state ``[B, max_state_dim]``."""
        dev = next(self.parameters()).device
        tok = self.tokenizer(
            [t if t.endswith("\n") else t + "\n" for t in instructions],
            padding="max_length",
            truncation=True,
            max_length=self.cfg.tokenizer_max_length,
            return_tensors="pt",
        )
        state = self.state_norm.normalize(state.to(dev).float())
        state = F.pad(state, (0, self.cfg.max_state_dim - state.shape[-1]))  # [B, max_state_dim]
        return tok["input_ids"].to(dev), tok["attention_mask"].to(dev).bool(), state

    def compute_loss(self, batch: dict) -> Tensor:
        """Masked mean of the flow-matching error over real action dims and non-padded steps."""
        ids, mask, state = self._prompt_and_state(batch["state"], batch["instruction"])
        prev, curr = batch["prev"], batch["curr"]
        actions = self.action_norm.normalize(batch["actions"].to(state.device).float())  # [B, chunk, A]
        actions = F.pad(actions, (0, self.cfg.max_action_dim - actions.shape[-1]))
        err = self.model(prev, curr, ids, mask, state, actions)[..., : self.cfg.action_dim]  # [B, chunk, A]
        valid = (~batch["action_is_pad"].to(state.device)).float()[..., None]  # [B, chunk, 1]
        return (err * valid).sum() / (valid.sum() * self.cfg.action_dim).clamp_min(1.0)

    def predict_chunk(self, prev: Tensor, curr: Tensor, state: Tensor, instructions: list[str]) -> Tensor:
        ids, mask, state_n = self._prompt_and_state(state, instructions)
        out = self.model.sample_actions(prev, curr, ids, mask, state_n)[..., : self.cfg.action_dim]
        return self.action_norm.unnormalize(out).cpu()


# ---- lerobot checkpoint layout -------------------------------------------------------------------

#: foreign weights the swap replaces or Pi0 never uses; dropped by prefix.
LEROBOT_PI0_DROPPED = (
    "paligemma_with_expert.paligemma.model.vision_tower.",  # SigLIP -> `vision.backbone`
    "paligemma_with_expert.paligemma.model.multi_modal_projector.",  # -> `vision.projector`
    "paligemma_with_expert.gemma_expert.lm_head.",  # the expert's LM head is never used by Pi0
)
#: modules the swap adds: fresh initialisation, listed by prefix.
PI0_NEW_PREFIXES = ("vision.",)
_LM = "paligemma_with_expert.paligemma.model.language_model."
_RENAMES = {"time_mlp_in.": "action_time_mlp_in.", "time_mlp_out.": "action_time_mlp_out."}


def convert_lerobot_pi0(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """lerobot Pi0 ``model.safetensors`` (``PI0Policy``, lerobot >= 0.4 / transformers >= 4.52) -> ours.

    Mapping, each step named:

    1. a leading ``model.`` (a ``PI0Policy.state_dict()``) is stripped; the released
       ``model.safetensors`` files store ``PI0Pytorch`` keys without it;
    2. :data:`LEROBOT_PI0_DROPPED` prefixes are removed (the vision tower and the
       multi-modal projector are what the swap replaces);
    3. ``paligemma.lm_head.weight`` becomes ``...language_model.embed_tokens.weight``: PaliGemma
       ties the two, and the released files store only ``lm_head`` (lerobot issue 2151); when a
       file stores both, ``lm_head`` is dropped;
    4. ``time_mlp_in/out`` (older openpi-converted files) become ``action_time_mlp_in/out``
       (lerobot's ``_fix_pytorch_state_dict_keys``).

    Every other key (both Gemma towers, ``state_proj``, ``action_in_proj``, ``action_out_proj``,
    ``action_time_mlp_*``) keeps its name.
    """
    sd = {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state_dict.items()}
    sd = drop_prefixed(sd, LEROBOT_PI0_DROPPED)
    head = sd.pop("paligemma_with_expert.paligemma.lm_head.weight", None)
    if _LM + "embed_tokens.weight" not in sd:
        if head is None:
            raise KeyError("checkpoint has neither paligemma lm_head.weight nor language_model.embed_tokens.weight")
        sd[_LM + "embed_tokens.weight"] = head
    out = {}
    for k, v in sd.items():
        for old, new in _RENAMES.items():
            if k.startswith(old):
                k = new + k[len(old) :]
        out[k] = v
    return out


def load_lerobot_pi0(model: Pi0Model, state_dict: dict[str, Tensor]) -> list[str]:
    """Convert and load strictly; returns the keys of the new modules (kept at their init)."""
    return load_converted(model, convert_lerobot_pi0(state_dict), PI0_NEW_PREFIXES)
