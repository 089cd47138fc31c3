"""encoder.source resolution: the newest pretraining export, explicit random init, clear errors."""

import json
import os
from pathlib import Path

import pytest

from avbr.eval.rollouts.encoder_source import (EncoderSourceError, newest_export, pretrain_output_root,
                                               resolve_encoder_source)
from avbr.models import build_model, save_encoder


def _export(root: Path, run: str, name: str, mtime: float) -> Path:
    folder = save_encoder(build_model(name, preset="tiny", img_size=32, depth=3), root / run / "encoder")
    for f in folder.iterdir():
        os.utime(f, (mtime, mtime))
    return folder


def test_default_root_is_pretrainings_output_folder():
    # configs/pretrain/config.yaml: train.output_dir: outputs/pretrain/${objective.name}_..._${now:...}
    assert pretrain_output_root() == Path("outputs/pretrain")


def test_unset_source_takes_the_newest_export_of_the_same_model(tmp_path, capsys):
    _export(tmp_path, "old", "two_stream", 1_000)
    newest = _export(tmp_path, "new", "two_stream", 3_000)
    _export(tmp_path, "other_model", "m_only", 5_000)  # newer, but another model
    cfg, info = resolve_encoder_source({"name": "two_stream", "source": None, "arch": "small"}, root=tmp_path)
    assert cfg["source"] == str(newest) and info == {"random_init": False, "source": str(newest),
                                                     "selected": "newest_export"}
    assert f"using the newest two_stream encoder exported by pretraining, {newest}" in capsys.readouterr().out
    assert newest_export(tmp_path, "single_stream") is None
    # The resolved export loads through the adapter registry.
    from avbr.adapters import EncoderConfig, build_encoder

    assert build_encoder(EncoderConfig(**{**cfg, "device": "cpu"})).contract.source == str(newest)


def test_no_export_stops_with_the_pretraining_command(tmp_path):
    with pytest.raises(EncoderSourceError) as err:
        resolve_encoder_source({"name": "two_stream", "source": None}, root=tmp_path)
    assert "python -m avbr.train model.encoder=two_stream" in str(err.value)
    assert "encoder.source=random" in str(err.value)
    with pytest.raises(EncoderSourceError, match="encoder.source=random"):
        resolve_encoder_source({"name": "dinov2_hf", "source": None}, root=tmp_path)


def test_random_is_explicit_and_labelled(tmp_path):
    cfg, info = resolve_encoder_source({"name": "dinov2_hf", "source": "random"}, root=tmp_path)
    assert cfg["source"] is None and info["random_init"] is True and info["source"] == "random"
    cfg, info = resolve_encoder_source({"name": "dinov2_hf", "source": "facebook/dinov2-small"})
    assert cfg["source"] == "facebook/dinov2-small" and info["random_init"] is False
    assert json.dumps(info)  # goes into results.json
