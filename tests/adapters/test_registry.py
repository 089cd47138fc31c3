"""Encoder registry: names, errors, offline advice, and every entry's random-init control."""

from __future__ import annotations

import pytest

from avbr.adapters import EncoderConfig, WeightsNotFoundError, build_encoder, list_encoders
from avbr.adapters.registry import register_encoder


def test_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="dinov2_hf.*r3m"):
        build_encoder(EncoderConfig(name="dinov3", device="cpu"))


def test_duplicate_name_raises() -> None:
    with pytest.raises(KeyError, match="already registered"):
        register_encoder("clip")(lambda cfg: None)


def test_offline_hub_error_says_how_to_use_a_local_copy() -> None:
    with pytest.raises(WeightsNotFoundError, match=r"encoder=clip encoder\.source=/data/weights/clip-vit-base-patch16"):
        build_encoder(EncoderConfig(name="clip", source="openai/clip-vit-base-patch16", device="cpu"))


TINY = {
    "dinov2_hf": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2),
    "dinov2_timm": dict(embed_dim=32, depth=1, num_heads=2),
    "timm_vit": dict(embed_dim=32, depth=1, num_heads=2),
    "clip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    "siglip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    "videomae": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    "videomae_ours": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_random_init_control_shapes(name: str, make_frames) -> None:
    """``source: null`` builds the architecture with random weights; shapes follow the contract."""
    enc = build_encoder(EncoderConfig(name=name, img_size=56, model_kwargs=TINY[name], device="cpu"))
    assert enc.contract.source.startswith("random init")
    x = make_frames(2, 70, 90)
    feats = enc.encode(x, x)
    n = feats.grid[0] * feats.grid[1]
    assert feats.cls.shape == (2, enc.feature_dim) and feats.patches.shape == (2, n, enc.feature_dim)


def test_every_family_has_a_random_init_test() -> None:
    assert set(list_encoders()) - set(TINY) <= {"r3m", "two_stream", "single_stream", "early_fusion", "m_only", "p_only"}


def test_every_config_option_is_a_registry_name_and_validates() -> None:
    """``configs/encoder/<name>.yaml`` composes (schema + file) into a valid EncoderConfig."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import avbr.adapters.features  # noqa: F401  (stores the tool's primary config)

    root = Path(__file__).resolve().parents[2] / "configs"
    options = sorted(p.stem for p in (root / "encoder").glob("*.yaml"))
    assert options == list_encoders()
    with initialize_config_dir(config_dir=str(root), version_base=None):
        for name in options:
            cfg = compose(config_name="features_app", overrides=[f"encoder={name}"])
            enc = EncoderConfig(**OmegaConf.to_container(cfg.encoder))
            assert enc.name == name
