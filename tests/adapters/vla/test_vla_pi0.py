"""Pi0 with our two-stream encoder: training step, LoRA gradients, masks, sampling, lerobot keys."""

import numpy as np
import pytest
import torch
from avbr.adapters.vla.factory import LoraSettings, apply_lora
from avbr.adapters.vla.pi0 import (
    GEMMA_VARIANTS,
    LEROBOT_PI0_DROPPED,
    Pi0Config,
    Pi0Model,
    convert_lerobot_pi0,
    load_lerobot_pi0,
    make_att_2d_masks,
)
from avbr.envs import TaskInfo
from transformers import GemmaConfig, GemmaForCausalLM, PaliGemmaConfig, PaliGemmaForConditionalGeneration
from vla_fixtures import TWO_STREAM


def test_train_step_with_lora_reaches_encoder_and_projector(make_policy, batch) -> None:
    policy = make_policy("pi0")
    apply_lora(policy, LoraSettings(r=4, alpha=4))
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    loss = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    named = dict(policy.model.named_parameters())
    trainable = {n: p for n, p in named.items() if p.requires_grad}
    enc = [p for n, p in trainable.items() if "vision.backbone" in n]
    proj = [p for n, p in trainable.items() if "vision.projector" in n]
    lora = [p for n, p in trainable.items() if "lora_B" in n]
    assert enc and proj and lora
    assert sum(p.grad.abs().sum() for p in enc if p.grad is not None) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj)
    # the Gemma base weights are frozen under LoRA
    assert not named["base_model.model.paligemma_with_expert.paligemma.model.language_model.layers.0.mlp.up_proj.base_layer.weight"].requires_grad
    before = [p.detach().clone() for p in proj]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, proj))


def test_frozen_encoder_gets_no_gradient(make_policy, batch) -> None:
    policy = make_policy("pi0", backbone={**TWO_STREAM, "freeze": True})
    apply_lora(policy, LoraSettings(r=4, alpha=4))
    policy.compute_loss(batch).backward()
    for n, p in policy.model.named_parameters():
        if "vision.backbone" in n:
            assert not p.requires_grad
        if "vision.projector" in n and p.requires_grad:
            assert p.grad is not None


def test_block_attention_masks() -> None:
    """prefix 0..0 | state 1 | actions 1 0 0: prefix never sees suffix; state never sees actions."""
    pad = torch.tensor([[True, True, False, True, True, True, True]])  # one padded language token
    att = torch.tensor([[0, 0, 0, 1, 1, 0, 0]])
    m = make_att_2d_masks(pad, att)[0]
    assert not m[:2, 3:].any()  # prefix -> suffix
    assert m[3, :2].all() and m[3, 3] and not m[3, 4:].any()  # state -> prefix + itself
    assert m[4:, [0, 1, 3, 4, 5, 6]].all()  # actions -> everything valid
    assert not m[:, 2].any()  # padded token is never attended


def test_prefix_is_independent_of_suffix_and_cache_matches_joint_pass(make_policy, batch) -> None:
    policy = make_policy("pi0")
    model = policy.model.eval()
    prev, curr = batch["prev"], batch["curr"]
    ids, mask, state = policy._prompt_and_state(batch["state"], batch["instruction"])
    pre_e, pre_pad, pre_att = model.embed_prefix(prev, curr, ids, mask)
    outs = []
    for seed in (0, 1):
        noisy = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(seed))
        suf_e, suf_pad, suf_att = model.embed_suffix(state, noisy, torch.full((3,), 0.5))
        pad = torch.cat([pre_pad, suf_pad], 1)
        m = make_att_2d_masks(pad, torch.cat([pre_att, suf_att], 1))
        outs.append(model.paligemma_with_expert([pre_e, suf_e], m, pad.long().cumsum(1) - 1)[0])
    valid = pre_pad[..., None]
    assert torch.allclose(outs[0][0] * valid, outs[1][0] * valid, atol=1e-6)  # prefix unaffected
    assert torch.allclose(outs[0][1][:, 0], outs[1][1][:, 0], atol=1e-6)  # state token unaffected
    assert not torch.allclose(outs[0][1][:, 1:], outs[1][1][:, 1:])
    # one Euler step with the prefix KV cache == x - v from a joint pass at t = 1
    noise = torch.randn(3, 4, 32)
    x1 = model.sample_actions(prev, curr, ids, mask, state, noise=noise, num_steps=1)
    suf_e, suf_pad, suf_att = model.embed_suffix(state, noise, torch.ones(3))
    pad = torch.cat([pre_pad, suf_pad], 1)
    m = make_att_2d_masks(pad, torch.cat([pre_att, suf_att], 1))
    (_, so), _ = model.paligemma_with_expert([pre_e, suf_e], m, pad.long().cumsum(1) - 1)
    assert torch.allclose(x1, noise - model.action_out_proj(so[:, -4:]), atol=1e-5)


def test_flow_matching_target(make_policy, batch) -> None:
    """x_t = t * noise + (1 - t) * actions, target u = noise - actions: at t -> 0 with v = u the error is 0."""
    model = make_policy("pi0").model
    torch.nn.init.zeros_(model.action_out_proj.weight)
    torch.nn.init.zeros_(model.action_out_proj.bias)
    actions = torch.randn(3, 4, 32)
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)  # prev, curr: uint8 [B, H, W, 3]
    args = [frames[0], frames[1], torch.ones(3, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.bool), torch.zeros(3, 32)]
    err = model(*args, actions, noise=actions.clone(), time=torch.full((3,), 0.3))
    assert torch.allclose(err, torch.zeros_like(err))  # v = 0 and u = noise - actions = 0


def test_chunk_and_act_shapes(make_policy, batch) -> None:
    """Model level: a chunk of chunk_size actions; rollout level: one action per env (the per-env
    state is tested for every policy in tests/test_policy.py)."""
    policy = make_policy("pi0").eval()
    assert policy.predict_chunk(batch["prev"], batch["curr"], batch["state"], batch["instruction"]).shape == (3, 4, 7)
    policy.reset([0, 1, 2], [TaskInfo("synthetic", i, "", text, None) for i, text in enumerate(batch["instruction"])])
    obs = {"agentview": batch["curr"].numpy(), "state": batch["state"].numpy()}
    actions = policy.act(obs, [0, 1, 2])
    assert actions.shape == (3, 7) and actions.dtype == np.float32
    assert policy.chunker.queued(0) == 3  # n_action_steps 4: three left
    with pytest.raises(KeyError, match="reset"):
        policy.act(obs, [0, 5, 2])


def _released_layout(vlm: str, expert: str, vocab: int, vision: dict) -> dict[str, torch.Tensor]:
    """A state dict in lerobot's Pi0 ``model.safetensors`` layout (transformers 4.5x key names:
    ``vision_tower.vision_model.*``; no ``language_model.embed_tokens``, only ``paligemma.lm_head``)."""
    v, e = GEMMA_VARIANTS[vlm], GEMMA_VARIANTS[expert]
    text = dict(hidden_size=v.width, intermediate_size=v.mlp_dim, num_hidden_layers=v.depth, num_attention_heads=v.num_heads,
                num_key_value_heads=v.num_kv_heads, head_dim=v.head_dim, vocab_size=vocab)
    pg = PaliGemmaForConditionalGeneration(PaliGemmaConfig(text_config=text, vision_config={**vision, "vision_use_head": False},
                                                           projection_dim=v.width))
    ex = GemmaForCausalLM(GemmaConfig(hidden_size=e.width, intermediate_size=e.mlp_dim, num_hidden_layers=e.depth,
                                      num_attention_heads=e.num_heads, num_key_value_heads=e.num_kv_heads, head_dim=e.head_dim,
                                      vocab_size=vocab, tie_word_embeddings=False))
    sd = {}
    for k, t in pg.state_dict().items():
        k = k.replace("model.vision_tower.", "model.vision_tower.vision_model.")
        if k == "model.language_model.embed_tokens.weight":
            sd["paligemma_with_expert.paligemma.lm_head.weight"] = t
        else:
            sd["paligemma_with_expert.paligemma." + k] = t
    for k, t in ex.state_dict().items():
        if k != "model.embed_tokens.weight":
            sd["paligemma_with_expert.gemma_expert." + k] = t
    for name, (i, o) in {"state_proj": (32, e.width), "action_in_proj": (32, e.width), "action_out_proj": (e.width, 32),
                         "action_time_mlp_in": (2 * e.width, e.width), "action_time_mlp_out": (e.width, e.width)}.items():
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.randn(o, i), torch.randn(o)
    return sd


TINY_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)


def test_fake_lerobot_checkpoint_loads_strictly() -> None:
    sd = _released_layout("gemma_tiny", "gemma_tiny_expert", 300, TINY_VISION)
    model = Pi0Model(Pi0Config(paligemma_variant="gemma_tiny", action_expert_variant="gemma_tiny_expert", vocab_size=300, backbone=TWO_STREAM))
    kept = load_lerobot_pi0(model, {"model." + k: v for k, v in sd.items()})  # PI0Policy-level keys
    assert kept and all(k.startswith("vision.") for k in kept)
    ours = model.state_dict()
    lm = "paligemma_with_expert.paligemma.model.language_model."
    assert torch.equal(ours[lm + "embed_tokens.weight"], sd["paligemma_with_expert.paligemma.lm_head.weight"])
    for k in ("state_proj.weight", lm + "layers.1.self_attn.q_proj.weight", "paligemma_with_expert.gemma_expert.model.norm.weight"):
        assert torch.equal(ours[k], sd[k])
    # a missing tower weight is an error, not a warning
    del sd["paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_lerobot_pi0(model, sd)
    with pytest.raises(KeyError, match="vision_tower"):
        convert_lerobot_pi0({k: v for k, v in sd.items() if not k.startswith(LEROBOT_PI0_DROPPED[0])})


def test_released_size_layout_matches_ours_on_meta() -> None:
    """At pi0's real sizes (SigLIP So400m, Gemma 2B, Gemma 300M) the released layout has 777 keys
    (lerobot issue 3109 logs 'Remapped 777 state dict keys'), and after conversion every key and
    shape equals ours."""
    so400m = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=224, patch_size=14)
    with torch.device("meta"):
        sd = _released_layout("gemma_2b", "gemma_300m", 257_152, so400m)
        model = Pi0Model(Pi0Config(backbone=TWO_STREAM))
    assert len(sd) == 777
    conv = {k: tuple(v.shape) for k, v in convert_lerobot_pi0(sd).items()}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("vision.")}
    assert conv == ours
