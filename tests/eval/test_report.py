"""eval/report.py: table with intervals, PNG chart, self-contained HTML, video links, config diff."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from avbr.eval.reporting.compare import ReportConfig, build_report, differing_config
from avbr.eval.rollouts.results import EpisodeResult, build_results


def _run(folder: Path, suite: str, encoder: str, successes: int, n: int, gap: int) -> Path:
    eps = [EpisodeResult(seed=0, task_id=0, episode=j, init_index=j, success=j < successes, length=5,
                         video=f"task00_ep{j:03d}_seed0_{'success' if j < successes else 'failure'}.mp4" if j < 1 else None)
           for j in range(n)]
    res = build_results(eps, suite=suite, encoder=encoder, policy="bc_mlp", tasks={0: "lift"}, seeds=[0],
                        config={"encoder": {"name": encoder, "source": None}, "gap": gap, "suite": {"name": suite},
                                "out_dir": str(folder)},
                        provenance={"git": {"commit": "abc", "dirty": False}, "versions": {}},
                        selection={"0": {"epoch": 1, "val_loss": 0.2, "criterion": "min held-out demo L1"}})
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "videos").mkdir()
    (folder / "videos" / eps[0].video).write_bytes(b"")
    return folder


def test_report(tmp_path):
    _run(tmp_path / "runs" / "a", "robosuite_lift", "enc_a", 3, 10, 1)
    _run(tmp_path / "runs" / "b", "robosuite_lift", "enc_b", 7, 10, 2)
    _run(tmp_path / "runs" / "c", "libero_object", "enc_a", 0, 4, 1)
    _run(tmp_path / "runs" / "d", "libero_object", "enc_b", 3, 3, 1)  # n/n: zero-height upper error bar
    paths = build_report(ReportConfig(runs=[str(tmp_path / "runs" / "*")], out=str(tmp_path / "rep")))
    md = paths["markdown"].read_text()
    assert "30.0% [10.8, 60.3] (3/10)" in md and "70.0% [39.7, 89.2] (7/10)" in md and "0.0% [0.0, 49.0] (0/4)" in md
    assert "100.0% [43.9, 100.0] (3/3)" in md
    assert "| `gap` |" in md and "out_dir" not in md.split("differ between runs")[1]
    assert "../runs/a/videos/task00_ep000_seed0_success.mp4" in md
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<img" in html
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_differing_config_and_bad_runs(tmp_path):
    assert differing_config([{"config": {"a": {"b": 1}, "c": 2}}, {"config": {"a": {"b": 3}, "c": 2}}]) == {"a.b": [1, 3]}
    with pytest.raises(FileNotFoundError, match="no folder holding results.json"):
        build_report(ReportConfig(runs=[str(tmp_path / "nothing*")], out=str(tmp_path / "rep")))


def test_report_script_by_path(tmp_path):
    run = _run(tmp_path / "r1", "robosuite_lift", "enc_a", 1, 2, 1)
    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "eval" / "report.py"),
                          f"runs=[{run}]", f"out={tmp_path / 'rep'}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rep" / "report.html").exists()
