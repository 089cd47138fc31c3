"""Rollout throughput of the evaluation loop and where its time goes (``python eval/bench.py eval``).

One measurement builds the simulators (process start-up is not timed), then runs ``episodes`` full episodes of ``max_steps`` policy steps with the real
rollout policy (:class:`avbr.eval.rollouts.rollout.EncoderPolicy`: frozen encoder + an untrained
``bc_mlp`` head, whose cost does not depend on its weights) in :class:`TrackingVectorEnv` with
``workers`` processes, and splits the wall time into

* ``env``: time the main process waits for the workers (simulation + rendering + pipe round
  trip; workers run in parallel, so this is wall time, not CPU time);
* ``encoder`` / ``policy``: batched encoder forward / head forward in the main process;
* ``other``: the rest (episode bookkeeping, observation stacking, resets between episodes are
  part of ``env``).

The same episodes are then run without rendering (``render=False``); the drop in ``env`` time per
step is the rendering cost, the remainder the simulation. Episodes per hour are quoted at the
measured length and extrapolated to the suite's protocol horizon (success ends episodes earlier
in real evaluations, so these are lower bounds for a good policy).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from avbr.envs import SuiteConfig, episode_specs, list_tasks, max_steps, run_episodes
from avbr.eval.rollouts.evaluate import TrackingVectorEnv
from avbr.eval.rollouts.policies import PolicyConfig, TrainedPolicy
from avbr.eval.rollouts.policy_data import FeatureSpec, encode_frames
from avbr.eval.rollouts.rollout import EncoderPolicy


def measure_rollouts(suite: SuiteConfig, encoder: Any, spec: FeatureSpec, policy_cfg: PolicyConfig,
                     workers: int, episodes: int, task_id: int = 0) -> dict[str, Any]:
    """Time ``episodes`` episodes of ``suite.max_steps`` steps with ``workers`` envs.

    Returns:
        Wall seconds by stage (``env_s``, ``encoder_s``, ``policy_s``, ``other_s``), ``steps``,
        ``episodes``, ``steps_per_s``, ``episodes_per_hour`` and per-step milliseconds.
    """
    # Feature width after the readout and camera concatenation, from one blank frame pair.
    size = suite.camera_size
    blank = {c: np.zeros((1, size, size, 3), np.uint8) for c in spec.cameras}
    dim = encode_frames(encoder, spec, blank, blank).shape[1]
    head = TrainedPolicy(policy_cfg, dim, num_tasks=1).eval()
    policy = EncoderPolicy(encoder, head, spec, [task_id], policy_cfg.n_action_steps)
    task = next(t for t in list_tasks(suite) if t.task_id == task_id)
    specs = episode_specs([task_id], episodes, suite.init_state_offset, task.num_init_states)
    venv = TrackingVectorEnv(suite, workers)
    try:
        warm = venv.reset(list(range(workers)), [specs[i % len(specs)] for i in range(workers)])  # builds the sims
        assert all(e is None for e in warm.error), warm.error
        venv.busy_s = 0.0
        t0 = time.perf_counter()
        records = run_episodes(suite, policy, episodes=specs, venv=venv)
        wall = time.perf_counter() - t0
    finally:
        venv.close()
    steps = sum(r.length for r in records)
    timers = policy.timers
    other = wall - venv.busy_s - timers.encoder_s - timers.policy_s
    return {"workers": workers, "renderer": venv.pool.renderer, "episodes": len(records), "steps": steps,
            "wall_s": round(wall, 2), "env_s": round(venv.busy_s, 2), "encoder_s": round(timers.encoder_s, 2),
            "policy_s": round(timers.policy_s, 3), "other_s": round(other, 2),
            "errors": sum(r.error is not None for r in records),
            "steps_per_s": round(steps / wall, 2), "episodes_per_hour": round(3600 * len(records) / wall, 1),
            "ms_per_step": {k: round(1000 * v / max(steps, 1), 2) for k, v in
                            (("env", venv.busy_s), ("encoder", timers.encoder_s), ("policy", timers.policy_s),
                             ("other", other))}}


def bench_eval(suite: SuiteConfig, encoder: Any, spec: FeatureSpec, policy_cfg: PolicyConfig,
               workers: list[int], episodes_per_worker: int) -> dict[str, Any]:
    """:func:`measure_rollouts` for each worker count, with and without rendering.

    ``episodes = episodes_per_worker * workers`` so that every worker runs the same number of
    episodes. Rendering cost per step = env ms/step (render) - env ms/step (no render).
    """
    horizon = max_steps(dataclasses.replace(suite, max_steps=None))
    results = []
    for n in workers:
        rendered = measure_rollouts(suite, encoder, spec, policy_cfg, n, episodes_per_worker * n)
        bare = measure_rollouts(dataclasses.replace(suite, render=False), encoder, spec, policy_cfg, n,
                                episodes_per_worker * n)
        env_ms, sim_ms = rendered["ms_per_step"]["env"], bare["ms_per_step"]["env"]
        rendered["breakdown_ms_per_step"] = {
            "simulation": sim_ms, "rendering": round(env_ms - sim_ms, 2),
            "encoder": rendered["ms_per_step"]["encoder"], "policy": rendered["ms_per_step"]["policy"],
            "other": rendered["ms_per_step"]["other"]}
        rendered["episodes_per_hour_at_protocol_horizon"] = round(3600 * rendered["steps_per_s"] / horizon, 1)
        rendered["no_render"] = {k: bare[k] for k in ("wall_s", "env_s", "steps_per_s", "ms_per_step")}
        results.append(rendered)
        print(f"workers={n}: {rendered['steps_per_s']} steps/s, {rendered['episodes_per_hour']} episodes/h at "
              f"{suite.max_steps} steps ({rendered['episodes_per_hour_at_protocol_horizon']} at the protocol's "
              f"{horizon}); ms/step {rendered['breakdown_ms_per_step']}", flush=True)
    return {"protocol_horizon": horizon, "episode_steps": suite.max_steps, "results": results}
