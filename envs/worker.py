"""Simulator worker process: builds its own simulator and runs episodes on request.

The worker is started with the ``spawn`` context (see :mod:`avbr.envs.vector`): EGL/OSMesa
contexts and MuJoCo renderers do not survive ``fork``, so every simulator is created inside the
process that uses it. A worker keeps the simulator of the last task it ran and rebuilds only when
the task changes. Requests arrive over a pipe as ``(command, *args)`` and each gets exactly one
reply, ``("ok", result)`` or ``("error", traceback)``; after an error the simulator is dropped and
rebuilt for the next episode.

Commands:
    ``start(spec)``  -> ``(obs, init_digest)``: reset to init state ``spec.init_index`` (or, for
        ``spec.source == "heldout_seed"``, to the held-out scene of that seed), run the settle
        steps, return the converted first observation.
    ``step(action)`` -> ``(obs, success)``: one policy step (``action`` float ``[7]``).
    ``expert(spec, record)`` -> :class:`EpisodeRecord`: a whole episode of the task's scripted
        expert, inside the worker; with ``record`` the per-step arrays of the demo file layout.
    ``close()``: release the simulator and exit.
"""

from __future__ import annotations

import hashlib
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from avbr.envs.config import ACTION_DIM, EpisodeRecord, EpisodeSpec, SuiteConfig
from avbr.envs.observations import convert_obs, quat_to_axis_angle
from avbr.envs.registry import SimEnv, build_env, max_steps
from avbr.envs.renderer import configure_renderer, gl_vendor
from avbr.envs.scenes import HELDOUT_SEED


def state_digest(state: np.ndarray) -> str:
    """Short fingerprint of a flattened MuJoCo state (rounded to 1e-9, so reruns match)."""
    return hashlib.sha1(np.round(np.asarray(state, dtype=np.float64), 9).tobytes()).hexdigest()[:16]


class EpisodeRunner:
    """Runs the episode protocol on the simulator of the current task (inside a worker)."""

    def __init__(self, cfg: SuiteConfig) -> None:
        self.cfg = cfg
        self.env: SimEnv | None = None
        self.raw: dict[str, np.ndarray] | None = None
        self.init_state: np.ndarray | None = None

    def _env_for(self, task_id: int) -> SimEnv:
        if self.env is not None and self.env.task.task_id != task_id:
            self.drop_env()
        if self.env is None:
            self.env = build_env(self.cfg, task_id)
        return self.env

    def drop_env(self) -> None:
        """Close and forget the simulator (after an error it may be in a broken state)."""
        if self.env is not None:
            try:
                self.env.close()
            finally:
                self.env = None

    def start(self, spec: EpisodeSpec) -> tuple[dict[str, np.ndarray], str]:
        env = self._env_for(spec.task_id)
        raw = env.reset_heldout(spec.init_index) if spec.source == HELDOUT_SEED else env.reset(spec.init_index)
        self.init_state = env.env.sim.get_state().flatten()
        digest = state_digest(self.init_state)
        settle = np.asarray(self.cfg.settle_action, dtype=np.float64)
        for _ in range(self.cfg.num_settle_steps):
            raw, _ = env.step(settle)
        self.raw = raw
        return convert_obs(raw, self.cfg), digest

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], bool]:
        assert self.env is not None, "step before start"
        action = np.asarray(action, dtype=np.float64)
        assert action.shape == (ACTION_DIM,), f"action must be [{ACTION_DIM}], got {action.shape}"
        self.raw, success = self.env.step(action)
        return convert_obs(self.raw, self.cfg), success

    def expert(self, spec: EpisodeSpec, record: bool) -> EpisodeRecord:
        from avbr.envs.experts import make_expert  # noqa: PLC0415

        _, digest = self.start(spec)
        env = self.env
        assert env is not None and self.raw is not None
        expert = make_expert(self.cfg.name, env)
        steps: dict[str, list[np.ndarray]] = {}
        success, length = False, 0
        while length < max_steps(self.cfg) and not success:
            action = np.asarray(expert.act(self.raw), dtype=np.float64)
            if record:
                for key, value in demo_step(env, self.raw, action, self.cfg.render).items():
                    steps.setdefault(key, []).append(value)
            self.raw, success = env.step(action)
            length += 1
        data: dict[str, Any] | None = None
        if record:
            data = {key: np.stack(values) for key, values in steps.items()}
            data["attrs"] = env.demo_attrs()
            data["model_file"] = env.env.sim.model.get_xml()
            data["init_scene_state"] = self.init_state
        return EpisodeRecord(task_id=spec.task_id, init_index=spec.init_index, episode=spec.episode,
                             success=success, length=length, language=env.task.language,
                             init_digest=digest, data=data, init_source=spec.source)


def joint_positions(env: SimEnv) -> np.ndarray:
    """Arm joint positions ``float64 [7]`` read from the simulator (robosuite 1.4 leaves
    ``robot0_joint_pos`` out of some tasks' observations)."""
    robot = env.env.robots[0]
    return np.array(env.env.sim.data.qpos[robot._ref_joint_pos_indexes])


def demo_step(env: SimEnv, raw: dict[str, np.ndarray], action: np.ndarray,
              render: bool) -> dict[str, np.ndarray]:
    """One step of a demo file: the observation and sim state *before* ``action``.

    Images are stored as the simulator renders them (OpenGL convention, upside down), exactly as
    in the official LIBERO hdf5 files; :class:`avbr.envs.demos.DemoFile` converts them with
    :func:`avbr.envs.observations.policy_frames`, as rollouts do. Unlike the official files
    (observation *after* the action), the observation recorded here is the one before ``action``.
    """
    ee = np.concatenate([raw["robot0_eef_pos"], quat_to_axis_angle(raw["robot0_eef_quat"])])
    out = {
        "actions": action.copy(),
        "states": env.env.sim.get_state().flatten(),
        "robot_states": np.concatenate([raw["robot0_gripper_qpos"], raw["robot0_eef_pos"],
                                        raw["robot0_eef_quat"]]),
        "ee_states": ee,
        "gripper_states": np.asarray(raw["robot0_gripper_qpos"]).copy(),
        "joint_states": joint_positions(env),
    }
    if render:
        out["agentview_rgb"] = np.asarray(raw["agentview_image"]).copy()
        out["eye_in_hand_rgb"] = np.asarray(raw["robot0_eye_in_hand_image"]).copy()
    return out


def worker_main(conn: Connection, cfg: SuiteConfig, render_env: dict[str, str] | None = None) -> None:
    """Entry point of a worker process (target of ``multiprocessing`` ``spawn``).

    Args:
        conn: pipe to the parent.
        cfg: suite config.
        render_env: environment variables placing this worker on its renderer, set before any
            simulator import (:func:`avbr.envs.renderer.worker_render_env`: the EGL GPU, or the
            software renderer's thread count).
    """
    os.environ.update(render_env or {})
    configure_renderer(cfg.renderer)
    runner = EpisodeRunner(cfg)
    handlers: dict[str, Any] = {"start": runner.start, "step": runner.step, "expert": runner.expert,
                                "gl_vendor": gl_vendor}
    while True:
        try:
            command, *args = conn.recv()
        except EOFError:
            break
        if command == "close":
            runner.drop_env()
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", handlers[command](*args)))
        except Exception:  # noqa: BLE001 - reported to the parent, which records the episode
            try:
                runner.drop_env()
            except Exception:  # noqa: BLE001 - the simulator is already broken
                runner.env = None
            conn.send(("error", traceback.format_exc()))
    conn.close()
