"""A failing optional writer never loses what the run measured.

The unit tests use the writers directly; the slow test breaks two writers of a real robosuite Lift
evaluation (32 px, a one-block ViT, 10-step episodes): a video and the summary, the writer that
lost the issue-20 run's summary (a ``TypeError`` in ``summary_markdown``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore

from avbr.eval.rollouts import evaluate as evaluate_module
from avbr.eval.rollouts.outputs import OptionalOutputs, OptionalOutputsError, write_results
from avbr.eval.rollouts.results import load_results, validate_results


def test_results_are_written_whole(tmp_path):
    path = write_results({"b": 1, "a": [1.5, None]}, tmp_path / "results.json")
    assert json.loads(path.read_text()) == {"a": [1.5, None], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_failing_writer_is_reported_and_the_others_still_run(tmp_path, capsys):
    optional = OptionalOutputs(tmp_path)
    stale = tmp_path / "summary.md"
    stale.write_text("summary of an earlier, shorter run")

    def broken() -> None:
        stale.write_text("half a")
        raise TypeError("'NoneType' object is not subscriptable")

    assert optional.write("summary.md", broken, stale) is False
    assert optional.write("results.csv", lambda: (tmp_path / "results.csv").write_text("ok")) is True
    assert not stale.exists()  # neither the stale nor the partial copy stays beside the new results
    assert (tmp_path / "results.csv").read_text() == "ok"
    assert "could not write summary.md: TypeError: 'NoneType' object is not subscriptable" in capsys.readouterr().err
    with pytest.raises(OptionalOutputsError) as info:
        optional.raise_if_failed()
    message = str(info.value)
    assert str(tmp_path / "results.json") in message and str(tmp_path / "episodes.jsonl") in message
    assert "1 optional output(s)" in message and "summary.md: TypeError" in message
    assert "run the same command again" in message


def test_no_failure_raises_nothing(tmp_path):
    optional = OptionalOutputs(tmp_path)
    assert optional.write("x", lambda: None)
    optional.raise_if_failed()


# -- a real evaluation whose summary and video writers fail --------------------------------------

ENV = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


@pytest.fixture(scope="module")
def lift_demos(tmp_path_factory):
    pytest.importorskip("robosuite")
    out = tmp_path_factory.mktemp("demos")
    proc = subprocess.run([sys.executable, "-m", "avbr.envs.make_demos", "suite=robosuite_lift", "n_per_task=2",
                           "workers=1", "suite.camera_size=32", f"out={out}", f"hydra.run.dir={out}/hydra"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_broken_summary_and_video_writers_keep_the_results(lift_demos, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(evaluate_module, "summary_markdown", broken)
    monkeypatch.setattr(evaluate_module, "write_video", broken)
    out = tmp_path / "run"
    import avbr.adapters  # noqa: F401, PLC0415 - stores the encoder group's schema, as eval/libero.py does
    from avbr.envs.config import register_suite_schema  # noqa: PLC0415

    register_suite_schema()
    ConfigStore.instance().store(name="libero_schema", node=evaluate_module.EvalConfig)
    with initialize_config_module("avbr.configs", version_base="1.3"):
        cfg = compose("libero", overrides=[
            "encoder=timm_vit", "encoder.source=random", "encoder.arch=vit_tiny_patch16_224", "encoder.img_size=32",
            "encoder.device=cpu", "++encoder.model_kwargs.depth=1", "suite.camera_size=32", "suite.max_steps=10",
            "episodes_per_task=2", "workers=1", f"demos.dir={lift_demos}", f"demos.cache_dir={tmp_path / 'cache'}",
            "policy.epochs=2", "policy.hidden_dim=32", "videos_per_task=1", "wandb.mode=disabled", f"out_dir={out}"])
    with pytest.raises(OptionalOutputsError, match=r"2 optional output\(s\)") as info:
        evaluate_module.evaluate(cfg, out)
    assert "videos/task00_ep000_seed0_" in str(info.value) and "summary.md: TypeError" in str(info.value)

    results = load_results(out)  # everything measured is there and valid
    validate_results(results)
    assert results["suite_success"]["episodes"] == 2
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [(e["episode"], e["video"]) for e in episodes] == [(0, None), (1, None)]  # no video claimed
    assert (out / "results.csv").read_text().count("\n") == 3  # header, task 0, ALL
    assert json.loads((out / "timing.json").read_text())["episodes_run"] == 2
    assert not (out / "summary.md").exists() and not list(out.glob("videos/*.mp4"))
