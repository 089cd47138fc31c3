"""OpenVLA (Prismatic-style) with our two-stream encoder: training, splicing, decoding, openvla-7b keys."""

import pytest
import timm
import torch
import torch.nn.functional as F
from avbr.adapters.vla.factory import LoraSettings, apply_lora
from avbr.adapters.vla.openvla import OPENVLA_DROPPED, OpenVLAConfig, OpenVLAModel, llama_config, load_openvla_7b
from avbr.envs import TaskInfo
from transformers import LlamaForCausalLM
from vla_fixtures import TWO_STREAM


def test_train_step_with_lora_reaches_encoder_and_projector(make_policy, batch) -> None:
    policy = make_policy("openvla")
    apply_lora(policy, LoraSettings(r=4, alpha=4))
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    loss = policy.compute_loss(batch)
    loss.backward()
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    enc = [p for n, p in trainable.items() if "vision_backbone" in n]
    proj = [p for n, p in trainable.items() if "projector" in n]
    assert enc and proj and any("lora_B" in n for n in trainable)
    assert sum(p.grad.abs().sum() for p in enc if p.grad is not None) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj)
    before = [p.detach().clone() for p in proj]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, proj))


def test_sequence_layout_and_loss_on_action_tokens_only(make_policy, batch) -> None:
    policy = make_policy("openvla")
    at, tok = policy.action_tokenizer, policy.tokenizer
    ids = policy.prompt_ids("Reach the RED block")
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "in:whatactionshouldtherobottaketoreachtheredblock?out:"
    assert ids[0] == tok.bos_token_id
    # splice: [pad.., BOS, image patches, prompt[1:], tail]
    actions = policy.action_norm.normalize(batch["actions"][:, 0])
    tail = torch.cat([at.encode(actions), torch.full((3, 1), tok.eos_token_id)], 1)
    embeds, mask, pads = policy._sequence(batch["prev"], batch["curr"], batch["instruction"], tail, None)
    emb = policy.model.language_model.get_input_embeddings()
    img = policy.model.image_embeds(batch["prev"], batch["curr"])
    row, p = 0, pads[0]
    assert torch.allclose(embeds[row, p], emb.weight[tok.bos_token_id])
    assert torch.allclose(embeds[row, p + 1 : p + 1 + img.shape[1]], img[row], atol=1e-5)
    assert mask[row, :p].sum() == 0 and mask[row, p:].all()
    # CE on the 8 tail positions only (7 action tokens + EOS), predicted from the previous position
    logits = policy.model(embeds, mask).logits
    manual = F.cross_entropy(logits[:, -9:-1].reshape(-1, logits.shape[-1]), tail.reshape(-1))
    torch.manual_seed(0)
    assert torch.allclose(policy.compute_loss(batch), manual, atol=1e-5)


def test_greedy_decoding_is_batch_and_cache_consistent(make_policy, batch) -> None:
    policy = make_policy("openvla").eval()
    # prompts of different lengths, so rows get different left padding
    args = (batch["prev"], batch["curr"], batch["state"], ["reach the red block", "reach the green block right now", "reach"])
    together = policy.predict_chunk(*args)
    alone = torch.cat([policy.predict_chunk(*(a[i : i + 1] for a in args)) for i in range(3)])
    assert together.shape == (3, 1, 7)
    assert torch.allclose(together, alone, atol=1e-5)
    # without a KV cache: append each decoded token's embedding and rerun the whole sequence
    at = policy.action_tokenizer
    embeds, mask, _ = policy._sequence(*args[:2], args[3], None, None)
    emb = policy.model.language_model.get_input_embeddings()
    tokens = []
    for _ in range(7):
        logits = policy.model(embeds, mask).logits[:, -1, at.first_id :]
        nxt = logits.argmax(-1) + at.first_id
        tokens.append(nxt)
        embeds = torch.cat([embeds, emb(nxt)[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    ref = policy.action_norm.unnormalize(at.decode(torch.stack(tokens, 1)))
    assert torch.allclose(together[:, 0], ref, atol=1e-5)


def test_oft_l1_chunk_head(make_policy, batch) -> None:
    policy = make_policy("openvla", action_head="l1_chunk", n_action_steps=2)
    apply_lora(policy, LoraSettings(r=4, alpha=4))
    loss = policy.compute_loss(batch)
    loss.backward()
    head = [p for n, p in policy.model.named_parameters() if "action_head" in n and p.requires_grad]
    assert head and all(p.grad is not None for p in head)
    policy.eval()
    assert policy.predict_chunk(batch["prev"], batch["curr"], batch["state"], batch["instruction"]).shape == (3, 4, 7)
    policy.reset([7], [TaskInfo("synthetic", 0, "", batch["instruction"][0], None)])
    policy.act({"agentview": batch["curr"][:1].numpy(), "state": batch["state"][:1].numpy()}, [7])
    assert policy.chunker.queued(7) == 1  # n_action_steps = 2 executed per chunk


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="known: \\['l1_chunk', 'tokens'\\]"):
        OpenVLAConfig(action_head="diffusion")
    with pytest.raises(ValueError, match="normalize_mask"):
        OpenVLAConfig(action_dim=6)


def _layerscale_vit(dim: int) -> dict[str, torch.Tensor]:
    """A tiny timm ViT state dict with OpenVLA's LayerScale rename (``gamma`` -> ``scale_factor``)."""
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=1,
                            embed_dim=dim, num_heads=2, init_values=1e-5, reg_tokens=4, no_embed_class=True)
    return {k.replace(".gamma", ".scale_factor"): v for k, v in vit.state_dict().items()}


def test_fake_openvla_7b_checkpoint_loads_strictly() -> None:
    """Released layout at tiny sizes: vision_backbone.{featurizer,fused_featurizer}.*, projector.fc1-3.*,
    language_model.{model.*, lm_head.weight} (vocab padded to a multiple of 64)."""
    cfg = OpenVLAConfig(llm_variant="llama_tiny", vocab_size=320, backbone=TWO_STREAM)
    lm = LlamaForCausalLM(llama_config("llama_tiny", 320))
    sd = {f"language_model.{k}": v for k, v in lm.state_dict().items()}
    sd.update({f"vision_backbone.featurizer.{k}": v for k, v in _layerscale_vit(16).items()})
    sd.update({f"vision_backbone.fused_featurizer.{k}": v for k, v in _layerscale_vit(24).items()})
    for i, (o, n) in enumerate([(160, 40), (32, 160), (32, 32)], start=1):
        sd[f"projector.fc{i}.weight"], sd[f"projector.fc{i}.bias"] = torch.randn(o, n), torch.randn(o)
    model = OpenVLAModel(cfg)
    kept = load_openvla_7b(model, sd)
    assert kept and all(k.startswith(("vision_backbone.", "projector.")) for k in kept)
    ours = model.state_dict()
    for k in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight", "language_model.model.layers.1.mlp.down_proj.weight"):
        assert torch.equal(ours[k], sd[k])
    del sd["language_model.model.norm.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_openvla_7b(model, sd)
    with pytest.raises(KeyError, match="projector"):
        load_openvla_7b(model, {k: v for k, v in sd.items() if not k.startswith(OPENVLA_DROPPED[1])})


def test_extra_modules_to_save(make_policy) -> None:
    policy = make_policy("openvla")
    with pytest.raises(ValueError, match="names no module"):
        apply_lora(policy, LoraSettings(r=4, extra_modules_to_save=["language_model.lm_hed"]))
    apply_lora(policy, LoraSettings(r=4, extra_modules_to_save=["language_model.lm_head"]))
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad and "lm_head" in n]
    assert trainable and all("modules_to_save" in n for n in trainable)
