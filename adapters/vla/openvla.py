"""OpenVLA as a Prismatic-style model of our own: vision backbone -> MLP projector -> LlamaForCausalLM.

OpenVLA's modeling code is not on PyPI (it ships as ``trust_remote_code`` files pinned to
transformers 4.40 and timm 0.9). This module rebuilds the parts the swap needs, from the facts
below (source: openvla/openvla ``prismatic/extern/hf/modeling_prismatic.py``,
``prismatic/vla/action_tokenizer.py``, ``prismatic/models/backbones/llm/prompting`` and the
``openvla/openvla-7b`` weight layout; read, not copied):

* Module names: ``vision_backbone`` (released: ``featurizer`` DINOv2 ViT-L/14 + ``fused_featurizer``
  SigLIP So400M/14, patches of the second-to-last block concatenated to ``[B, 256, 2176]``),
  ``projector`` (``fc1``/``fc2``[/``fc3``] with GELU), ``language_model`` (``LlamaForCausalLM``,
  Llama-2 7B, embedding rows padded from 32001 to 32064).
* Sequence: ``[BOS, image patches, prompt tokens, action tokens, EOS]`` -- the projected patches
  are spliced into ``inputs_embeds`` right after BOS.
* Prompt (``PurePromptBuilder``): ``"In: What action should the robot take to {instruction}?\\nOut:"``
  with the instruction lower-cased; training appends ``" "`` then the action string, which the
  Llama tokenizer turns into the empty-piece token 29871 followed by the action ids; inference
  appends 29871 explicitly. Here the prompt is tokenised and ``prompt_suffix_token_id`` (29871 for
  Llama-2, ``None`` for the tiny tokenizer) is appended in both cases, then action ids directly.
* Loss: next-token cross-entropy on the 7 action tokens and EOS only.
* Actions: q01/q99 normalisation to ``[-1, 1]`` (see :mod:`.normalize`), then
  :class:`~avbr.adapters.vla.action_tokenizer.ActionTokenizer`.

Decisions of ours:

* The swapped encoder gets a fresh Prismatic *single-backbone* projector
  (``fc1: D -> W``, GELU, ``fc2: W -> W``); the released fused projector expects 2176-d inputs.
* Greedy decoding is restricted to the 256 action ids (``constrain_decoding``); OpenVLA takes the
  arg-max over the whole vocabulary and clips non-action ids into the extreme bins.
* Prompts are left-padded, so a batch decodes in lock-step; positions come from the mask.
* Optional OFT-style head (``action_head=l1_chunk``, after OpenVLA-OFT, Kim et al. 2025):
  ``oft_chunk x action_dim`` placeholder positions with zero input embeddings follow the
  prompt; their last hidden states, grouped per time step ``[B, chunk, A * W]``, go through an MLP
  to ``[B, chunk, A]``, trained with L1 on normalised actions and decoded in one forward pass
  (parallel decoding). OFT also makes attention bidirectional over those positions; this head
  keeps Llama's causal mask (a stock ``LlamaForCausalLM``), which is the one difference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaForCausalLM

from avbr.registry import Registry

from .action_tokenizer import ActionTokenizer
from .backbone import BackboneConfig, build_backbone, encode_patches, pool_tokens
from .keymap import drop_prefixed, load_converted
from .normalize import Normalizer
from .policy import VLAPolicy

IGNORE_INDEX = -100

#: Llama sizes: (hidden, intermediate, layers, heads, kv_heads). ``llama2_7b`` is OpenVLA's LLM.
LLAMA_VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "llama2_7b": (4096, 11008, 32, 32, 32),
    "llama_small": (512, 1376, 8, 8, 8),
    "llama_tiny": (32, 64, 2, 4, 4),
}


@dataclass
class OpenVLAConfig:
    """OpenVLA hyper-parameters; defaults are openvla-7b's unless marked *ours*.

    Attributes:
        llm_variant: key of :data:`LLAMA_VARIANTS` (``llama2_7b``).
        vocab_size: LLM embedding rows (32064); ``None`` = ``len(tokenizer)`` rounded up to
            ``pad_to_multiple_of`` (*ours*, for tiny tokenizers).
        pad_to_multiple_of: embedding padding multiple (64).
        n_bins: action bin edges (256).
        action_dim: action width (LIBERO 7).
        prompt_template: ``{instruction}`` is replaced by the lower-cased instruction.
        prompt_suffix_token_id: token appended after the prompt (Llama-2 ``"▁"`` = 29871);
            ``None`` appends nothing.
        constrain_decoding: greedy decoding over action ids only (*ours*).
        action_head: ``tokens`` (OpenVLA) or ``l1_chunk`` (OFT-style, *ours* implementation).
        oft_chunk: actions per chunk of the ``l1_chunk`` head (OFT on LIBERO: 8).
        n_action_steps: actions of a chunk executed before re-planning (``tokens``: 1).
        normalize_mask: dims normalised by q01/q99 (OpenVLA LIBERO stats leave the gripper).
        frame_gap: env steps between ``prev`` and ``curr`` (*ours*).
        backbone: the registry encoder replacing DINOv2+SigLIP (*ours*); ``max_tokens`` 256 =
            OpenVLA's count.
    """

    llm_variant: str = "llama2_7b"
    vocab_size: int | None = 32064
    pad_to_multiple_of: int = 64
    n_bins: int = 256
    action_dim: int = 7
    prompt_template: str = "In: What action should the robot take to {instruction}?\nOut:"
    prompt_suffix_token_id: int | None = 29871
    constrain_decoding: bool = True
    action_head: str = "tokens"
    oft_chunk: int = 8
    n_action_steps: int = 1
    normalize_mask: list[bool] = field(default_factory=lambda: [True] * 6 + [False])
    frame_gap: int = 1
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(max_tokens=256))

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if self.llm_variant not in LLAMA_VARIANTS:
            raise ValueError(f"unknown llm_variant {self.llm_variant!r}; known: {sorted(LLAMA_VARIANTS)}")
        if self.action_head not in ACTION_HEADS.names():
            raise ValueError(f"unknown action_head {self.action_head!r}; known: {ACTION_HEADS.names()}")
        if len(self.normalize_mask) != self.action_dim:
            raise ValueError(f"normalize_mask has {len(self.normalize_mask)} entries, action_dim is {self.action_dim}")
        chunk = 1 if self.action_head == "tokens" else self.oft_chunk
        if not 1 <= self.n_action_steps <= chunk:
            raise ValueError(f"n_action_steps must be in [1, {chunk}] for action_head={self.action_head}")


class PrismaticProjector(nn.Module):
    """Prismatic's single-backbone projector: ``fc1 (D -> W)``, GELU, ``fc2 (W -> W)``."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, patches: Tensor) -> Tensor:
        """``[B, N, D] -> [B, N, W]``."""
        return self.fc2(self.act_fn1(self.fc1(patches)))


class L1ChunkHead(nn.Module):
    """OFT-style regression head: hidden states of the placeholder positions -> an action chunk.

    Args:
        llm_dim: LLM width ``W``; action_dim: ``A``; chunk: ``H``.
    """

    def __init__(self, llm_dim: int, action_dim: int, chunk: int) -> None:
        super().__init__()
        self.action_dim, self.chunk = action_dim, chunk
        self.mlp = nn.Sequential(
            nn.LayerNorm(action_dim * llm_dim),
            nn.Linear(action_dim * llm_dim, llm_dim),
            nn.GELU(),
            nn.Linear(llm_dim, action_dim),
        )

    def forward(self, hidden: Tensor) -> Tensor:
        """``[B, H * A, W] -> [B, H, A]``."""
        b, _, w = hidden.shape
        return self.mlp(hidden.reshape(b, self.chunk, self.action_dim * w))  # [B, H, A * W] -> [B, H, A]


#: action heads: name -> builder(cfg, llm_dim) returning a module or ``None`` (token head).
ACTION_HEADS: Registry = Registry("OpenVLA action head")
ACTION_HEADS.register("tokens")(lambda cfg, llm_dim: None)
ACTION_HEADS.register("l1_chunk")(lambda cfg, llm_dim: L1ChunkHead(llm_dim, cfg.action_dim, cfg.oft_chunk))


def llama_config(variant: str, vocab_size: int) -> LlamaConfig:
    """A ``LlamaConfig`` of the named size (Llama-2 conventions: RMSNorm eps 1e-5, 4096 positions)."""
    hidden, inter, layers, heads, kv = LLAMA_VARIANTS[variant]
    return LlamaConfig(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab_size,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )


class OpenVLAModel(nn.Module):
    """The network: ``vision_backbone``, ``projector``, ``language_model`` [, ``action_head``].

    Args:
        cfg: :class:`OpenVLAConfig` with ``vocab_size`` resolved.
    """

    def __init__(self, cfg: OpenVLAConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("OpenVLAModel needs a resolved vocab_size (OpenVLAPolicy derives it from the tokenizer)")
        self.cfg = cfg
        self.vision_backbone = build_backbone(cfg.backbone)
        llm_cfg = llama_config(cfg.llm_variant, cfg.vocab_size)
        self.projector = PrismaticProjector(self.vision_backbone.feature_dim, llm_cfg.hidden_size)
        self.language_model = LlamaForCausalLM(llm_cfg)
        head = ACTION_HEADS.get(cfg.action_head)(cfg, llm_cfg.hidden_size)
        if head is not None:
            self.action_head = head

    def image_embeds(self, prev: Tensor, curr: Tensor) -> Tensor:
        """uint8 frames ``[B, H, W, 3]`` -> projected patches ``[B, N, W]`` (the encoder resizes and
        normalises them as its contract says)."""
        patches, grid = encode_patches(self.vision_backbone, prev, curr)  # [B, N, D]
        return self.projector(pool_tokens(patches, grid, self.cfg.backbone.max_tokens))

    def forward(
        self, inputs_embeds: Tensor, attention_mask: Tensor, labels: Tensor | None = None, **kwargs
    ):
        """LLM forward on spliced embeddings ``[B, L, W]``; positions from the (left-padded) mask."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **kwargs
        )


class OpenVLAPolicy(VLAPolicy):
    """OpenVLA behind the shared policy API.

    Args:
        cfg: :class:`OpenVLAConfig`.
        tokenizer: Llama-2's tokenizer (or a tiny one); ``tokenizer.vocab_size`` anchors the action ids.
        action_norm: q01/q99 :class:`Normalizer` fitted on the training demos.
    """

    name = "openvla"

    def __init__(self, cfg: OpenVLAConfig, tokenizer, action_norm: Normalizer) -> None:
        if cfg.vocab_size is None:
            m = cfg.pad_to_multiple_of
            cfg = dataclasses.replace(cfg, vocab_size=-(-len(tokenizer) // m) * m)
        super().__init__(cfg.frame_gap, cfg.n_action_steps)
        if cfg.vocab_size < len(tokenizer):
            raise ValueError(f"vocab_size {cfg.vocab_size} < len(tokenizer) {len(tokenizer)}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.action_norm = action_norm
        self.action_tokenizer = ActionTokenizer(tokenizer.vocab_size, cfg.n_bins)
        self.model = OpenVLAModel(cfg)

    @property
    def train_chunk(self) -> int:
        """Actions per training sample (and per :meth:`predict_chunk` call)."""
        return 1 if self.cfg.action_head == "tokens" else self.cfg.oft_chunk

    lora_target_regex = r"language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    """LoRA on every linear layer of the Llama (OpenVLA's LoRA recipe: all linear layers)."""

    def new_modules(self) -> list[str]:
        """Modules trained in full under LoRA: the encoder (unless ``backbone.freeze``), the projector
        and the OFT head when present."""
        mods = ([] if self.cfg.backbone.freeze else ["vision_backbone"]) + ["projector"]
        return mods + (["action_head"] if self.cfg.action_head != "tokens" else [])

    def normalizers(self) -> dict[str, Normalizer]:
        """The fitted normalisers, by name (saved with checkpoints)."""
        return {"action": self.action_norm}

    def prompt_ids(self, instruction: str) -> list[int]:
        """BOS + prompt tokens (+ the suffix token)."""
        text = self.cfg.prompt_template.format(instruction=instruction.lower())
        ids = list(self.tokenizer(text)["input_ids"])
        if not ids or ids[0] != self.tokenizer.bos_token_id:
            raise ValueError("the tokenizer must prepend BOS (OpenVLA splices the image after it)")
        if self.cfg.prompt_suffix_token_id is not None:
            ids.append(self.cfg.prompt_suffix_token_id)
        return ids

    def _sequence(
        self, prev: Tensor, curr: Tensor, instructions: list[str], tail_ids: Tensor | None, tail_embeds: Tensor | None
    ) -> tuple[Tensor, Tensor, list[int]]:
        """Left-padded ``[pad, BOS, patches, prompt, tail]`` embeddings ``[B, L, W]`` and mask ``[B, L]``.

        ``tail_ids [B, T]`` are embedded (action tokens + EOS); ``tail_embeds [B, T, W]`` are used
        as they are (OFT placeholders). Also returns each row's left-pad length.
        """
        dev = next(self.parameters()).device
        img = self.model.image_embeds(prev, curr)  # [B, N, W]
        embed = self.model.language_model.get_input_embeddings()
        rows = []
        for i, text in enumerate(instructions):
            ids = torch.tensor(self.prompt_ids(text), device=dev)
            parts = [embed(ids[:1]), img[i], embed(ids[1:])]
            if tail_ids is not None:
                parts.append(embed(tail_ids[i].to(dev)))
            if tail_embeds is not None:
                parts.append(tail_embeds[i])
            rows.append(torch.cat(parts, dim=0))  # [L_i, W]
        length = max(r.shape[0] for r in rows)
        pads = [length - r.shape[0] for r in rows]
        pad_emb = embed(torch.tensor([self.tokenizer.pad_token_id], device=dev))  # [1, W]
        embeds = torch.stack([torch.cat([pad_emb.expand(p, -1), r], 0) for p, r in zip(pads, rows, strict=True)])  # [B, L, W]
        mask = torch.stack([torch.arange(length, device=dev) >= p for p in pads]).long()  # [B, L]
        return embeds, mask, pads

    def compute_loss(self, batch: dict) -> Tensor:
        """Token head: CE on action tokens + EOS. ``l1_chunk`` head: L1 on the normalised chunk."""
        dev = next(self.parameters()).device
        actions = self.action_norm.normalize(batch["actions"].to(dev).float())  # [B, H, A]
        if self.cfg.action_head == "tokens":
            ids = self.action_tokenizer.encode(actions[:, 0])  # [B, A] (OpenVLA: one step)
            eos = torch.full((ids.shape[0], 1), self.tokenizer.eos_token_id, device=dev)
            tail = torch.cat([ids, eos], dim=1)  # [B, A + 1]
            embeds, mask, _ = self._sequence(batch["prev"], batch["curr"], batch["instruction"], tail, None)
            labels = torch.full(mask.shape, IGNORE_INDEX, device=dev, dtype=torch.long)
            labels[:, -tail.shape[1] :] = tail
            return self.model(embeds, mask, labels=labels).loss
        n = self.cfg.oft_chunk
        if actions.shape[1] < n:
            raise ValueError(f"batch has {actions.shape[1]}-step action chunks, the l1_chunk head needs {n}")
        w = self.model.language_model.config.hidden_size
        placeholders = torch.zeros(actions.shape[0], n * self.cfg.action_dim, w, device=dev)
        embeds, mask, _ = self._sequence(batch["prev"], batch["curr"], batch["instruction"], None, placeholders)
        hidden = self.model(embeds, mask, output_hidden_states=True).hidden_states[-1]  # [B, L, W]
        pred = self.model.action_head(hidden[:, -placeholders.shape[1] :])  # [B, H, A]
        valid = (~batch["action_is_pad"].to(dev)[:, :n]).float()[..., None]  # [B, H, 1]
        err = (pred - actions[:, :n]).abs() * valid
        return err.sum() / (valid.sum() * self.cfg.action_dim).clamp_min(1.0)

    def predict_chunk(self, prev: Tensor, curr: Tensor, state: Tensor, instructions: list[str]) -> Tensor:
        """Greedy action-token decoding (``tokens``) or one parallel pass (``l1_chunk``) -> ``[B, chunk, A]``."""
        dev = next(self.parameters()).device
        if self.cfg.action_head == "l1_chunk":
            w = self.model.language_model.config.hidden_size
            ph = torch.zeros(len(instructions), self.cfg.oft_chunk * self.cfg.action_dim, w, device=dev)
            embeds, mask, _ = self._sequence(prev, curr, instructions, None, ph)
            hidden = self.model(embeds, mask, output_hidden_states=True).hidden_states[-1]
            normed = self.model.action_head(hidden[:, -ph.shape[1] :])  # [B, H, A]
            return self.action_norm.unnormalize(normed).cpu()
        embeds, mask, _ = self._sequence(prev, curr, instructions, None, None)
        at = self.action_tokenizer
        out = self.model(embeds, mask, use_cache=True)
        position = (mask.sum(-1, keepdim=True) - 1)  # [B, 1] last position
        tokens = []
        for step in range(self.cfg.action_dim):
            logits = out.logits[:, -1]  # [B, V]
            if self.cfg.constrain_decoding:
                keep = torch.zeros_like(logits, dtype=torch.bool)
                keep[:, at.first_id : at.last_id + 1] = True
                logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
            nxt = logits.argmax(-1)  # [B]
            tokens.append(nxt)
            if step == self.cfg.action_dim - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            out = self.model.language_model(
                input_ids=nxt[:, None], attention_mask=mask, position_ids=position,
                past_key_values=out.past_key_values, use_cache=True,
            )
        normed = at.decode(torch.stack(tokens, dim=1))  # [B, A]
        return self.action_norm.unnormalize(normed)[:, None].cpu()  # [B, 1, A]


# ---- openvla-7b checkpoint layout ----------------------------------------------------------------

#: openvla-7b weights the swap replaces: the fused DINOv2+SigLIP featurizers and the fused projector.
OPENVLA_DROPPED = ("vision_backbone.", "projector.")
#: modules the swap adds (fresh initialisation).
OPENVLA_NEW_PREFIXES = ("vision_backbone.", "projector.", "action_head.")


def convert_openvla_7b(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``openvla/openvla-7b`` safetensors shards (merged) -> ours.

    The released keys are ``vision_backbone.featurizer.*`` / ``vision_backbone.fused_featurizer.*``
    (timm ViTs, LayerScale ``gamma`` renamed ``scale_factor``), ``projector.fc1/fc2/fc3.*`` and
    ``language_model.model.*`` / ``language_model.lm_head.weight``. The vision and projector keys
    are dropped (:data:`OPENVLA_DROPPED`); the ``language_model.*`` keys keep their names, since
    ``language_model`` is a ``LlamaForCausalLM`` here too.
    """
    return drop_prefixed(dict(state_dict), OPENVLA_DROPPED)


def load_openvla_7b(model: OpenVLAModel, state_dict: dict[str, Tensor]) -> list[str]:
    """Convert and load strictly; returns the keys of the new modules (kept at their init)."""
    return load_converted(model, convert_openvla_7b(state_dict), OPENVLA_NEW_PREFIXES)
