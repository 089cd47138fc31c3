"""Wilson intervals, the resumable episode log and results.json schema validation."""

import copy
import csv
import json
from pathlib import Path

import pytest

from avbr.eval.rollouts.results import (SCHEMA_VERSION, EpisodeLog, EpisodeResult, ResultsSchemaError, build_results,
                               load_results, summary_markdown, validate_results, wilson_interval, write_csv)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = {"name": "avbr", "version": "0.1.0", "files_sha256": "9f8e7d6c" + "0" * 56}


def test_wilson_known_values():
    # Reference values: Wilson score interval, z = 1.96 (e.g. statsmodels proportion_confint(method="wilson")).
    low, high = wilson_interval(31, 50)
    assert low == pytest.approx(0.4815, abs=1e-4) and high == pytest.approx(0.7414, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def _episodes():
    return [EpisodeResult(seed=s, task_id=t, episode=j, init_index=j, success=(j + t + s) % 2 == 0, length=10 + j)
            for s in (0, 1) for t in (0, 1) for j in range(3)]


def _results(episodes=None, commit="abc"):
    return build_results(episodes or _episodes(), suite="robosuite_lift", encoder="tiny", policy="bc_mlp",
                         tasks={0: "lift", 1: "other"}, seeds=[0, 1], config={"gap": 1},
                         provenance={"git": {"commit": commit, "dirty": False if commit else None},
                                     "package": PACKAGE, "versions": {"torch": "x"}},
                         selection={"0": {"epoch": 3, "val_loss": 0.1, "criterion": "min held-out demo L1"}})


def test_build_and_validate_results(tmp_path):
    res = _results()
    validate_results(res)
    assert res["schema_version"] == SCHEMA_VERSION
    assert res["suite_success"]["episodes"] == 12 and res["suite_success"]["successes"] == 6
    assert [t["episodes"] for t in res["per_task"]] == [6, 6]
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert load_results(tmp_path)["suite"] == "robosuite_lift"
    assert "| ALL |" in summary_markdown(res)
    write_csv(res, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") == 4  # header, 2 tasks, ALL


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("provenance"), "missing field 'provenance'"),
    (lambda r: r["provenance"]["git"].pop("commit"), "missing field 'commit'"),
    (lambda r: r["provenance"]["git"].update(commit=7), "commit: expected str or null"),
    (lambda r: r["suite_success"].update(successes=7), "success_rate"),
    (lambda r: r["per_task"][0].update(ci95_low=0.0), "Wilson"),
    (lambda r: r["episodes"][0].update(success=not r["episodes"][0]["success"]), "counts"),
    (lambda r: r["episodes"][0].update(length="10"), "expected int"),
    (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
])
def test_validation_rejects_bad_results(mutate, message):
    res = copy.deepcopy(_results())
    mutate(res)
    with pytest.raises(ResultsSchemaError, match=message):
        validate_results(res)


def test_writers_accept_a_missing_commit(tmp_path):
    """Run from an installed wheel there is no git commit: every writer names the package instead."""
    res = _results(commit=None)
    validate_results(res)
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert load_results(tmp_path)["provenance"]["git"]["commit"] is None
    assert "Code no git commit (avbr 0.1.0, files 9f8e7d6c)." in summary_markdown(res)
    write_csv(res, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        header, *rows = csv.reader(f)
    assert header[-1] == "code" and len(rows) == 3
    assert all(r[-1] == "no git commit (avbr 0.1.0, files 9f8e7d6c)" for r in rows)
    assert "Code abc." in summary_markdown(_results())


def test_version_1_files_are_read(tmp_path):
    """Version 1 kept ``git`` and ``versions`` at the top level; load_results lifts them into ``provenance``."""
    res = _results()
    old = {k: v for k, v in res.items() if k != "provenance"}
    old |= {"schema_version": 1, "git": {"commit": "0123456789abcdef", "dirty": True}, "versions": {"torch": "x"}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    with pytest.raises(ResultsSchemaError, match="load_results, which upgrades"):
        validate_results(old)
    loaded = load_results(tmp_path)
    assert loaded["schema_version"] == SCHEMA_VERSION == 2
    assert loaded["provenance"] == {"git": {"commit": "0123456789abcdef", "dirty": True},
                                    "versions": {"torch": "x"}, "package": None}
    assert "Code 0123456789 (dirty)." in summary_markdown(loaded)
    # The committed evaluation runs under reports/ (written as version 1) still load.
    committed = sorted((REPO / "reports" / "eval" / "runs").glob("*/results.json"))
    assert committed and all(load_results(p)["provenance"]["git"]["commit"] for p in committed)


def test_episode_log_resume_skips_torn_line(tmp_path):
    path = tmp_path / "episodes.jsonl"
    log = EpisodeLog(path)
    eps = _episodes()
    for e in eps[:3]:
        log.append(e)
    with open(path, "ab") as f:
        f.write(b'{"seed": 0, "task_id"')  # killed mid-write
    again = EpisodeLog(path)
    assert len(again) == 3 and eps[0].key in again and eps[3].key not in again
    again.append(eps[3])
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    with pytest.raises(ValueError, match="already logged"):
        again.append(eps[0])
    assert EpisodeLog(path).results() == sorted(eps[:4], key=lambda e: e.key)


def test_crashed_episodes_are_not_failures(tmp_path):
    eps = _episodes()
    crashed = EpisodeResult(seed=0, task_id=1, episode=3, init_index=3, success=False, length=2,
                            error="WorkerCrashed: worker 0 died with exit code -9", crashed=True)
    res = _results(eps + [crashed])
    validate_results(res)
    # Same counts as without the crash: it is neither a success nor a failure.
    assert (res["suite_success"]["successes"], res["suite_success"]["episodes"]) == (6, 12)
    assert res["suite_success"]["crashed"] == 1 and [t["crashed"] for t in res["per_task"]] == [0, 1]
    assert res["crashes"] == [{"seed": 0, "task_id": 1, "episode": 3, "init_index": 3,
                               "error": "WorkerCrashed: worker 0 died with exit code -9"}]
    assert "Crashed (infrastructure" in summary_markdown(res) and "died with exit code -9" in summary_markdown(res)
    bad = copy.deepcopy(res)
    bad["episodes"][0]["crashed"] = True
    with pytest.raises(ResultsSchemaError, match="crashed"):
        validate_results(bad)


def test_crashed_episode_is_retried_on_resume(tmp_path):
    log = EpisodeLog(tmp_path / "episodes.jsonl")
    log.append(EpisodeResult(seed=0, task_id=0, episode=0, init_index=0, success=False, length=1,
                             error="EpisodeError: mujoco.FatalError", crashed=True))
    resumed = EpisodeLog(tmp_path / "episodes.jsonl")
    assert (0, 0, 0) not in resumed and len(resumed.results()) == 1  # not done: the resumed run retries it
    resumed.append(EpisodeResult(seed=0, task_id=0, episode=0, init_index=0, success=True, length=9))
    again = EpisodeLog(tmp_path / "episodes.jsonl")
    assert (0, 0, 0) in again and again.results()[0].success and not again.results()[0].crashed
    with pytest.raises(ValueError, match="already logged"):
        again.append(EpisodeResult(seed=0, task_id=0, episode=0, init_index=0, success=False, length=9))
    # Logs written before the `crashed` field existed still read.
    (tmp_path / "old.jsonl").write_text(json.dumps({"seed": 0, "task_id": 0, "episode": 1, "init_index": 1,
                                                    "success": True, "length": 3, "error": None, "init_digest": "",
                                                    "video": None}) + "\n")
    assert (0, 0, 1) in EpisodeLog(tmp_path / "old.jsonl")


def test_run_stops_when_more_than_ten_percent_crash(tmp_path):
    from avbr.eval.rollouts.evaluate import TooManyCrashesError, _check_crashes

    crashed = [EpisodeResult(seed=0, task_id=0, episode=j, init_index=j, success=False, length=0,
                             error="WorkerCrashed: no reply", crashed=True) for j in range(3)]
    _check_crashes(crashed[:2], 20)  # 2/20 = 10%: not more than the limit
    with pytest.raises(TooManyCrashesError, match=r"3 of 20 episodes crashed.*Last reason: WorkerCrashed: no reply.*"
                                                  r"run the same command again"):
        _check_crashes(crashed, 20)


def test_random_init_encoder_is_labelled_in_summary():
    res = build_results(_episodes(), suite="robosuite_lift", encoder="two_stream", policy="bc_mlp",
                        tasks={0: "lift", 1: "other"}, seeds=[0, 1], config={}, provenance={"git": {"commit": "abc", "dirty": False}, "versions": {}},
                        selection={}, extra={"encoder_source": {"random_init": True, "source": "random",
                                                                "selected": "explicit"}})
    validate_results(res)
    assert res["encoder_source"]["random_init"] is True
    assert "**Random-init encoder (control)" in summary_markdown(res)
