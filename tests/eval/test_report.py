"""eval/report.py: fair tables (refusal, allow_unequal), per-task tables, paired tests, unique labels,
bars with n and interval, self-contained HTML, video links, config diff."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest

from avbr.eval.reporting.compare import (IncomparableRunsError, ReportConfig, bar_chart, build_report,
                                         differing_config, group_runs, unique_labels)
from avbr.eval.rollouts.results import EpisodeResult, build_results

SHA = {"0": {"file": "Lift_demo.hdf5", "sha256": "a" * 64}}


def _run(folder: Path, suite: str, encoder: str, outcomes, gap: int = 1, seeds=(0,), source="random",
         demo_files=None, camera_size=128) -> Path:
    n = len(outcomes)
    eps = [EpisodeResult(seed=s, task_id=0, episode=j, init_index=j, success=bool(outcomes[j]), length=5,
                         video=f"task00_ep{j:03d}_seed{s}_{'success' if outcomes[j] else 'failure'}.mp4" if j < 1 else None)
           for s in seeds for j in range(n)]
    res = build_results(eps, suite=suite, encoder=encoder, policy="bc_mlp", tasks={0: "lift"}, seeds=list(seeds),
                        config={"encoder": {"name": encoder, "source": source}, "gap": gap, "episodes_per_task": n,
                                "suite": {"name": suite, "camera_size": camera_size, "num_settle_steps": 10},
                                "out_dir": str(folder)},
                        provenance={"git": {"commit": "abc", "dirty": False}, "versions": {}},
                        selection={"0": {"epoch": 1, "val_loss": 0.2, "criterion": "min held-out demo L1"}},
                        extra={"encoder_source": {"random_init": source == "random", "source": source,
                                                  "selected": "explicit"},
                               "demo_files": SHA if demo_files is None else demo_files})
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "videos").mkdir()
    (folder / "videos" / eps[0].video).write_bytes(b"")
    return folder


def test_report_tables_paired_test_and_chart(tmp_path):
    a = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    _run(tmp_path / "runs" / "a", "robosuite_lift", "enc_a", a, gap=1)
    _run(tmp_path / "runs" / "b", "robosuite_lift", "enc_b", b, gap=2, source="/ckpt/run7/encoder")
    _run(tmp_path / "runs" / "c", "libero_object", "enc_a", [0, 0, 0, 0])
    paths = build_report(ReportConfig(runs=[str(tmp_path / "runs" / "*")], out=str(tmp_path / "rep")))
    md = paths["markdown"].read_text()
    assert "## robosuite_lift" in md and "## libero_object" in md  # one table per suite
    assert "30.0% [10.8, 60.3] (3/10)" in md and "70.0% [39.7, 89.2] (7/10)" in md and "0.0% [0.0, 49.0] (0/4)" in md
    assert "| 0: lift |" in md and "**suite** (all episodes)" in md
    # Paired: enc_a only on no episode, enc_b only on 4 -> McNemar exact p = binomtest(0, 4).
    row = next(line for line in md.splitlines() if line.startswith("| enc_a (random init) | enc_b (run7/encoder) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:6] == ["10", "0", "4", "-40.0"]
    assert float(cells[7]) == pytest.approx(binomtest(0, 4, 0.5).pvalue, rel=1e-3)
    assert "Random-init encoders (controls" in md
    assert "| `gap` |" in md and "out_dir" not in md.split("differ between runs")[1]
    assert "../runs/a/videos/task00_ep000_seed0_success.mp4" in md
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<img" in html
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unequal_runs_are_refused_naming_the_keys(tmp_path):
    _run(tmp_path / "a", "robosuite_lift", "enc_a", [1, 0, 1], seeds=(0,))
    _run(tmp_path / "b", "robosuite_lift", "enc_b", [1, 1, 1], seeds=(0, 1),
         demo_files={"0": {"file": "Lift_demo.hdf5", "sha256": "b" * 64}}, camera_size=256)
    cfg = ReportConfig(runs=[str(tmp_path / "a"), str(tmp_path / "b")], out=str(tmp_path / "rep"))
    with pytest.raises(IncomparableRunsError, match="differ in demos, seeds, camera_size") as err:
        build_report(cfg)
    assert "allow_unequal=true" in str(err.value) and not (tmp_path / "rep").exists()
    cfg.allow_unequal = True
    md = build_report(cfg)["markdown"].read_text()
    warning = md.index("Not comparable (allow_unequal=true): these runs differ in demos, seeds, camera_size")
    assert warning < md.index("| task |")  # printed above the table
    assert "`camera_size`: enc_a (random init) = `128`; enc_b (random init) = `256`" in md


def test_two_exports_named_encoder_keep_separate_rows(tmp_path):
    r1 = _run(tmp_path / "x" / "r1", "robosuite_lift", "two_stream", [1, 0], source="/runs/a/encoder")
    r2 = _run(tmp_path / "x" / "r2", "robosuite_lift", "two_stream", [0, 0], source="/runs/b/encoder")
    r3 = _run(tmp_path / "x" / "r3", "robosuite_lift", "two_stream", [1, 1], source="/runs/b/encoder")
    results = [json.loads((r / "results.json").read_text()) for r in (r1, r2, r3)]
    assert unique_labels([r1, r2, r3], results) == [
        "two_stream (a/encoder)", "two_stream (b/encoder) [r2]", "two_stream (b/encoder) [r3]"]
    md = build_report(ReportConfig(runs=[str(tmp_path / "x" / "*")], out=str(tmp_path / "rep")))["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| task |"))
    assert header.count("two_stream") == 3


def test_bars_show_n_and_interval(tmp_path):
    run = _run(tmp_path / "r", "robosuite_lift", "enc", [1, 1, 1])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs([run], [json.loads((run / "results.json").read_text())], False)
    bar_chart(groups, tmp_path / "c.png")
    fig = plt.gcf() if plt.get_fignums() else None
    assert fig is None  # the chart closes its figure
    # Re-draw to inspect: 3/3 is annotated with n and its Wilson interval and hatched (n < 20),
    # and its error bar reaches down to the interval's lower end (43.9%).
    import avbr.eval.reporting.compare as compare

    captured = {}
    real_close = plt.close
    plt.close = lambda f: captured.setdefault("fig", f)
    try:
        compare.bar_chart(groups, tmp_path / "d.png")
    finally:
        plt.close = real_close
    ax = captured["fig"].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["3/3\n[44, 100]"]
    bar = ax.patches[0]
    assert bar.get_height() == pytest.approx(100) and bar.get_hatch() == "//"
    err = [c for c in ax.collections if c.get_segments()][0].get_segments()[0]
    assert min(p[1] for p in err) == pytest.approx(43.85, abs=0.01)
    real_close(captured["fig"])


def test_differing_config_and_bad_runs(tmp_path):
    assert differing_config([{"config": {"a": {"b": 1}, "c": 2}}, {"config": {"a": {"b": 3}, "c": 2}}]) == {"a.b": [1, 3]}
    with pytest.raises(FileNotFoundError, match="no folder holding results.json"):
        build_report(ReportConfig(runs=[str(tmp_path / "nothing*")], out=str(tmp_path / "rep")))


def test_report_script_by_path(tmp_path):
    run = _run(tmp_path / "r1", "robosuite_lift", "enc_a", [1, 0])
    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "eval" / "report.py"),
                          f"runs=[{run}]", f"out={tmp_path / 'rep'}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rep" / "report.html").exists()


def test_report_script_refuses_unequal_runs(tmp_path):
    a = _run(tmp_path / "a", "robosuite_lift", "enc_a", [1, 0])
    b = _run(tmp_path / "b", "robosuite_lift", "enc_b", [1, 0, 1])
    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "eval" / "report.py"),
                          f"runs=[{a},{b}]", f"out={tmp_path / 'rep'}"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "differ in episodes_per_task" in out.stderr and "allow_unequal=true" in out.stderr
