"""Demos for an evaluation: found on disk, or generated from held-out scenes when missing.

With ``demos.lerobot`` set, every task's demos come from that LeRobotDataset (its episodes whose
task text is the task's instruction); a task without episodes there stops the run (nothing is
generated into a dataset someone else wrote). Otherwise they are the hdf5 files under
``demos.dir``:

With ``demos.generate=auto`` (the default) and a scripted expert for the suite
(:func:`avbr.envs.experts.expert_suites`), the tasks without a demo file get
``demos.generate_per_task`` scripted episodes from held-out scenes (``make_demos``, progress bar
on stderr, the suite's default episode length) written into ``demos.dir``; then the files are
looked up again (a task with no successful episode leaves no file and raises). Otherwise (``never``,
or no expert) the :class:`~avbr.eval.rollouts.policy_data.DemosNotFoundError` stands, with the
download / generation instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from avbr.envs.config import SuiteConfig, TaskInfo
from avbr.eval.rollouts.demo_sets import DemoSet, Hdf5Demos, LeRobotDemos
from avbr.eval.rollouts.policy_data import DemoConfig, DemosNotFoundError, find_demo_files


def _lerobot_demos(cfg: DemoConfig, suite: SuiteConfig, tasks: Sequence[TaskInfo]) -> dict[int, DemoSet]:
    dataset = LeRobotDemos(cfg.lerobot, keys=cfg.lerobot_keys, flip_images=suite.flip_images)
    found = {t.task_id: dataset.for_task(t.language) for t in tasks}
    missing = [t for t in tasks if found[t.task_id] is None]
    if missing:
        have = dataset.tasks()
        raise DemosNotFoundError(
            f"the LeRobotDataset {dataset.root} has no episodes for {len(missing)} task(s) of {suite.name} "
            f"(task ids {','.join(str(t.task_id) for t in missing)}: {'; '.join(t.language for t in missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}); its {len(have)} task text(s): {'; '.join(have[:5])}"
            f"{' ...' if len(have) > 5 else ''}.\nA task's episodes are those whose task text is its instruction. "
            f"Write scripted ones with `python -m avbr.envs.make_demos suite={suite.name} out=<dir> format=lerobot` "
            f"and pass demos.lerobot=<dir>/{suite.name}/lerobot, evaluate only the tasks it has (tasks=[...]), "
            f"or unset demos.lerobot to read hdf5 files from demos.dir.")
    return {t: demos for t, demos in found.items() if demos is not None}


def find_demos(cfg: DemoConfig, suite: SuiteConfig, tasks: Sequence[TaskInfo]) -> dict[int, DemoSet]:
    """``task_id -> demos`` for every task (nothing generated).

    Raises:
        DemosNotFoundError: some tasks have no demos.
    """
    if cfg.lerobot:
        return _lerobot_demos(cfg, suite, tasks)
    return {t: Hdf5Demos(path) for t, path in find_demo_files(cfg, suite.name, tasks).items()}


def _has_demos(cfg: DemoConfig, suite: str, task: TaskInfo) -> bool:
    try:
        find_demo_files(cfg, suite, [task])
    except DemosNotFoundError:
        return False
    return True


def ensure_demos(cfg: DemoConfig, suite: SuiteConfig, tasks: Sequence[TaskInfo], workers: int) -> dict[int, DemoSet]:
    """``task_id -> demos`` for every task, generating the missing hdf5 files when allowed.

    Raises:
        DemosNotFoundError: files are missing and cannot be generated (or generation left some
            tasks without a successful demo).
    """
    from avbr.envs.experts import expert_suites  # noqa: PLC0415

    try:
        return find_demos(cfg, suite, tasks)
    except DemosNotFoundError:
        if cfg.lerobot or cfg.generate != "auto" or suite.name not in expert_suites():
            raise
    from avbr.envs.make_demos import MakeDemosConfig, make_demos  # noqa: PLC0415 - heavy

    missing = [t for t in tasks if not _has_demos(cfg, suite.name, t)]
    out = Path(cfg.dir).expanduser()
    print(f"[eval] no demos for {len(missing)} task(s) of {suite.name} under {out}; demos.generate=auto: generating "
          f"{cfg.generate_per_task} scripted demos per task from held-out scenes into {out / suite.name} "
          f"(demos.generate=never stops instead)", flush=True)
    # The expert gets the suite's default episode length (a short evaluation max_steps would
    # leave it no time to finish).
    summary = make_demos(MakeDemosConfig(suite=replace(suite, render=True, max_steps=None),
                                         n_per_task=cfg.generate_per_task, workers=workers, out=str(out),
                                         tasks=[t.task_id for t in missing]))
    empty = [t for t in summary["tasks"] if t["written"] == 0]
    for t in empty:  # a file without demos would block the next run
        Path(t["file"]).unlink(missing_ok=True)
    if empty:
        raise DemosNotFoundError(
            f"the scripted expert solved none of its {cfg.generate_per_task} held-out episodes for "
            + "; ".join(f"task {t['task_id']} ({t['name']}: {', '.join(t['errors'][:2]) or 'no error'})" for t in empty)
            + f". Get demos for these tasks another way (official datasets, or `python -m avbr.envs.make_demos "
              f"suite={suite.name} ...` with more episodes: demos.generate_per_task=...) into {out / suite.name}.")
    return find_demos(cfg, suite, tasks)
