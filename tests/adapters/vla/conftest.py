"""Fixtures of the VLA adapter tests: tiny configs (built in well under a second), a tiny tokenizer,
LIBERO-layout demo files in tmp_path and a batch from them. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from avbr.adapters.vla.data import LiberoDemoDataset, collate, write_synthetic_demos
from avbr.adapters.vla.factory import VLAS, build_policy, make_config
from avbr.adapters.vla.openvla import OpenVLAConfig
from avbr.adapters.vla.tokenizer import build_tiny_tokenizer
from vla_fixtures import TINY


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LIBERO-layout files (one per synthetic task), 2 demos x 8 steps of 32 px frames."""
    return write_synthetic_demos(tmp_path_factory.mktemp("demos"), n_demos=2, length=8, size=32)


@pytest.fixture(scope="session")
def dataset(demo_files: list[Path]) -> LiberoDemoDataset:
    return LiberoDemoDataset(demo_files, chunk=4)


@pytest.fixture(scope="session")
def tokenizer(dataset: LiberoDemoDataset):
    return build_tiny_tokenizer([OpenVLAConfig().prompt_template, *dataset.instructions], 320)


@pytest.fixture
def batch(dataset: LiberoDemoDataset) -> dict:
    """Three samples from both tasks, one of them at an episode end (padded action chunk)."""
    return collate([dataset[0], dataset[7], dataset[20]])


@pytest.fixture
def make_policy(dataset: LiberoDemoDataset, tokenizer):
    """``make_policy(name, **overrides)`` -> a tiny random-init policy with our two-stream encoder."""

    def make(name: str, **overrides):
        torch.manual_seed(0)
        cfg = make_config(name, {**TINY[name], **overrides})
        norms = VLAS.get(name).fit_normalizers(cfg, dataset.all_actions(), dataset.all_states())
        return build_policy(name, cfg, tokenizer, norms)

    return make
