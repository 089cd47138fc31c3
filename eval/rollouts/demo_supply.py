"""Demo files for an evaluation: found on disk, or generated from held-out scenes when missing.

With ``demos.generate=auto`` (the default) and a scripted expert for the suite
(:func:`avbr.envs.experts.expert_suites`), the tasks without a demo file get
``demos.generate_per_task`` scripted episodes from held-out scenes (``make_demos``, progress bar
on stderr) written into ``demos.dir``; then the files are looked up again. Otherwise (``never``,
or no expert) the :class:`~avbr.eval.rollouts.policy_data.DemosNotFoundError` stands, with the
download / generation instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from avbr.envs.config import SuiteConfig, TaskInfo
from avbr.eval.rollouts.policy_data import DemoConfig, DemosNotFoundError, find_demo_files


def _has_demos(cfg: DemoConfig, suite: str, task: TaskInfo) -> bool:
    try:
        find_demo_files(cfg, suite, [task])
    except DemosNotFoundError:
        return False
    return True


def ensure_demos(cfg: DemoConfig, suite: SuiteConfig, tasks: Sequence[TaskInfo], workers: int) -> dict[int, Path]:
    """``task_id -> demo file`` for every task, generating the missing ones when allowed.

    Raises:
        DemosNotFoundError: files are missing and cannot be generated (or generation left some
            tasks without a successful demo).
    """
    from avbr.envs.experts import expert_suites  # noqa: PLC0415

    try:
        return find_demo_files(cfg, suite.name, tasks)
    except DemosNotFoundError:
        if cfg.generate != "auto" or suite.name not in expert_suites():
            raise
    from avbr.envs.make_demos import MakeDemosConfig, make_demos  # noqa: PLC0415 - heavy

    missing = [t for t in tasks if not _has_demos(cfg, suite.name, t)]
    out = Path(cfg.dir).expanduser()
    print(f"[eval] no demos for {len(missing)} task(s) of {suite.name} under {out}; demos.generate=auto: generating "
          f"{cfg.generate_per_task} scripted demos per task from held-out scenes into {out / suite.name} "
          f"(demos.generate=never stops instead)", flush=True)
    make_demos(MakeDemosConfig(suite=replace(suite, render=True), n_per_task=cfg.generate_per_task,
                               workers=workers, out=str(out), tasks=[t.task_id for t in missing]))
    return find_demo_files(cfg, suite.name, tasks)
