"""``bench envs``: environment steps/s of a VectorEnv for several worker counts."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from avbr.eval.benchmarks.registry import machine, subcommand


def _envs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="robosuite_lift", help="suite registry name")
    p.add_argument("--task", type=int, default=0, help="task id every env runs")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts")
    p.add_argument("--steps", type=int, default=100, help="vector steps timed per worker count")
    p.add_argument("--camera-size", type=int, default=128)
    p.add_argument("--no-render", action="store_true", help="time without camera rendering")


@subcommand("envs", _envs_args)
def bench_envs(args: argparse.Namespace) -> dict[str, Any]:
    """Env steps/s (all envs together) of a VectorEnv with random actions, per worker count.

    Start-up (process spawn, simulator build, reset and settle) is timed separately; steps/s
    counts ``steps * workers`` single-env steps over the stepping time only.
    """
    from avbr.envs import EpisodeSpec, SuiteConfig, VectorEnv  # noqa: PLC0415

    cfg = SuiteConfig(name=args.suite, camera_size=args.camera_size, render=not args.no_render,
                      max_steps=10**6)
    rng = np.random.default_rng(0)
    results = []
    for workers in args.workers:
        t0 = time.perf_counter()
        with VectorEnv(cfg, workers) as venv:
            ids = list(range(workers))
            out = venv.reset(ids, [EpisodeSpec(args.task, i, i) for i in ids])
            assert all(e is None for e in out.error), out.error
            t1 = time.perf_counter()
            for _ in range(args.steps):
                actions = rng.uniform(-0.3, 0.3, size=(workers, 7))
                out = venv.step(ids, actions)
                assert all(e is None for e in out.error), out.error
            t2 = time.perf_counter()
        rate = args.steps * workers / (t2 - t1)
        results.append({"workers": workers, "steps_per_s": round(rate, 2),
                        "startup_s": round(t1 - t0, 2), "timed_steps": args.steps * workers})
        print(f"workers={workers}: {rate:.1f} env steps/s (start-up {t1 - t0:.1f} s)", flush=True)
    base = results[0]["steps_per_s"]
    for r in results:
        r["speedup_vs_first"] = round(r["steps_per_s"] / base, 2)
    return {"benchmark": "envs", "suite": args.suite, "task": args.task,
            "camera_size": args.camera_size, "render": not args.no_render, "results": results,
            "machine": machine()}
