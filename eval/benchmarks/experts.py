"""``bench experts``: scripted-expert success per task with the evaluation protocol."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from avbr.eval.benchmarks.registry import machine, subcommand


def _experts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suites", nargs="+", default=["robosuite_lift"])
    p.add_argument("--tasks", type=int, nargs="*", default=None, help="task ids (default: all)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--render", action="store_true", help="render cameras (slower)")


@subcommand("experts", _experts_args)
def bench_experts(args: argparse.Namespace) -> dict[str, Any]:
    """Scripted-expert success per task with the evaluation protocol (settle, max steps)."""
    from avbr.envs import SuiteConfig, list_tasks, run_expert_episodes  # noqa: PLC0415
    from avbr.envs.experts import ExpertUnavailable  # noqa: PLC0415

    suites: dict[str, Any] = {}
    for suite in args.suites:
        cfg = SuiteConfig(name=suite, render=args.render)
        tasks = list_tasks(cfg)
        ids = args.tasks if args.tasks else [t.task_id for t in tasks]
        t0 = time.perf_counter()
        done: dict[int, int] = {}

        def progress(record: Any) -> None:
            done[record.task_id] = done.get(record.task_id, 0) + 1
            if done[record.task_id] == args.episodes:
                print(f"  {suite} task {record.task_id}: all {args.episodes} episodes done", flush=True)

        records = run_expert_episodes(cfg, ids, args.episodes, args.workers, on_episode=progress)
        per_task = []
        for task in tasks:
            recs = [r for r in records if r.task_id == task.task_id]
            if not recs:
                continue
            unsupported = all(r.error and ExpertUnavailable.__name__ in r.error for r in recs)
            errors = sorted({r.error.strip().splitlines()[-1] for r in recs if r.error})
            successes = sum(r.success for r in recs)
            per_task.append({"task_id": task.task_id, "name": task.name, "language": task.language,
                             "episodes": len(recs), "successes": successes,
                             "success_rate": round(successes / len(recs), 3),
                             "mean_length": round(float(np.mean([r.length for r in recs])), 1),
                             "supported": not unsupported, "errors": errors})
            print(f"{suite} task {task.task_id} ({task.name}): {successes}/{len(recs)}"
                  + (" [no expert]" if unsupported else ""), flush=True)
        supported = [t for t in per_task if t["supported"]]
        suites[suite] = {"tasks": per_task, "seconds": round(time.perf_counter() - t0, 1),
                         "supported_tasks": len(supported),
                         "mean_success_supported": round(float(np.mean(
                             [t["success_rate"] for t in supported])), 3) if supported else None}
    return {"benchmark": "experts", "episodes_per_task": args.episodes, "render": args.render,
            "suites": suites, "machine": machine()}
