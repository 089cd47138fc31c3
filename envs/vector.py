"""Vectorised environments in worker processes, and the episode runners built on them.

Layers, bottom up:

* :class:`WorkerPool` -- ``N`` spawned worker processes (:mod:`avbr.envs.worker`), each owning one
  simulator. A worker that dies (segfault, OOM kill, ``os.kill``) or stays silent longer than
  ``SuiteConfig.step_timeout_s`` is replaced by a fresh one; the call raises
  :class:`WorkerCrashed` so the caller can record the episode as ``crashed`` (an
  infrastructure failure, like a simulator exception, not a policy failure).
* :class:`VectorEnv` -- gymnasium-style batch interface over the pool: ``reset(env_ids, specs)``
  and ``step(env_ids, actions)`` on any subset of envs, always returning the fixed structure
  :class:`VecStep` with observations from :func:`avbr.envs.observations.stack_obs`.
* :func:`run_episodes` -- the evaluation loop for a policy that runs in the calling process.
* :func:`run_expert_episodes` -- whole scripted-expert episodes inside the workers (no per-step
  IPC; used by ``make_demos`` and the expert-success measurements).

Episode protocol (every value a :class:`~avbr.envs.config.SuiteConfig` field): episode ``j`` of
task ``i`` is ``EpisodeSpec(task_id=i, init_index=init_state_offset + j, episode=j)``; the list is
fixed before anything runs, so the init state never depends on the order in which parallel
episodes finish. Each episode resets to its init state, sends ``num_settle_steps`` settle actions,
then gives the policy up to ``max_steps`` steps; it ends at the first step where the simulator's
success check holds, at ``max_steps``, or on an error (recorded, the run goes on).

Using it from an evaluation script (the policy interface is :class:`avbr.policy.Policy`)::

    from avbr.envs import SuiteConfig, run_episodes

    class MyPolicy:
        def reset(self, env_ids, tasks):          # new episodes of tasks[k] start in env_ids[k]
            ...                                   # e.g. clear those envs' frame buffers
        def act(self, obs, env_ids):              # the B envs env_ids with a running episode
            # obs["agentview"] uint8 [B,H,W,3] upright, obs["wrist"] uint8 [B,H,W,3],
            # obs["state"] float32 [B,8]; env_ids [B] (stable per-env keys for state)
            return actions                        # float [B,7], OSC delta, gripper -1 open/+1 closed

    records = run_episodes(SuiteConfig(name="libero_object"), MyPolicy(), tasks=None,
                           episodes_per_task=50, workers=4, record_frames=True)
    # records: list[EpisodeRecord] sorted by (task_id, episode): success, length, error,
    # init_index, language, frames (uint8 [T,H,W,3] upright agentview, when record_frames)
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from avbr.envs.config import ACTION_DIM, STATE_DIM, EpisodeRecord, EpisodeSpec, SuiteConfig, TaskInfo
from avbr.envs.observations import stack_obs
from avbr.envs.registry import get_suite, list_tasks, max_steps
from avbr.envs.renderer import configure_renderer, worker_render_env
from avbr.envs.worker import worker_main
from avbr.policy import Policy
from avbr.registry import UnknownNameError

log = logging.getLogger(__name__)


class WorkerCrashed(RuntimeError):
    """A worker process died or timed out; it has already been replaced."""


class EpisodeError(RuntimeError):
    """The worker raised while serving a request; the message is its traceback."""


class WorkerPool:
    """``num_workers`` spawned simulator workers with crash detection and restart.

    Args:
        cfg: suite config, sent to every worker.
        num_workers: number of processes.
    """

    def __init__(self, cfg: SuiteConfig, num_workers: int) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        get_suite(cfg.name)  # an unknown suite fails here, listing the known ones, not inside a worker
        backend = configure_renderer(cfg.renderer)
        self.cfg = cfg
        self._ctx = mp.get_context("spawn")
        # Each worker's rendering device: its GPU (EGL, round-robin) or its share of the cores
        # (Mesa's software renderer); see avbr.envs.renderer.
        self.render_envs = [worker_render_env(i, num_workers, backend.name) for i in range(num_workers)]
        self.procs: list[Any] = [None] * num_workers
        self.conns: list[Connection] = [None] * num_workers  # type: ignore[list-item]
        self.restarts = 0
        for i in range(num_workers):
            self._start(i)
        self.renderer = self._check_renderer(backend.name) if cfg.render else {"backend": backend.name}

    def _check_renderer(self, backend: str) -> dict[str, Any]:
        """Ask worker 0 which OpenGL implementation it renders with, and log it once."""
        self.send(0, "gl_vendor")
        info = {"backend": backend, **self.recv(0, timeout=120.0),
                "egl_devices": sorted({e["MUJOCO_EGL_DEVICE_ID"] for e in self.render_envs
                                       if "MUJOCO_EGL_DEVICE_ID" in e})}
        log.info("renderer: MUJOCO_GL=%s, %s / %s, worker GPUs %s", backend, info["vendor"],
                 info["renderer"], info["egl_devices"] or "none (software)")
        return info

    def __len__(self) -> int:
        return len(self.procs)

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (index = env id)."""
        return [p.pid for p in self.procs]

    def _start(self, i: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, args=(child, self.cfg, self.render_envs[i]), daemon=True,
                                 name=f"avbr-env-worker-{i}")
        proc.start()
        child.close()
        self.procs[i], self.conns[i] = proc, parent

    def restart(self, i: int) -> None:
        """Kill worker ``i`` (if still alive) and start a fresh one in its place."""
        proc = self.procs[i]
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        self.conns[i].close()
        self.restarts += 1
        self._start(i)

    def send(self, i: int, *message: Any) -> None:
        """Send a request to worker ``i`` (a dead pipe is detected by the next :meth:`recv`)."""
        try:
            self.conns[i].send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass

    def recv(self, i: int, timeout: float) -> Any:
        """Wait for worker ``i``'s reply to its pending request.

        Raises:
            WorkerCrashed: the worker died or timed out (it has been restarted).
            EpisodeError: the worker raised; it is alive and usable.
        """
        conn, proc = self.conns[i], self.procs[i]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if conn.poll(min(1.0, max(deadline - time.monotonic(), 0.0))):
                    status, payload = conn.recv()
                    break
                alive = proc.is_alive()
            except (EOFError, ConnectionResetError, OSError):
                alive = False
            if not alive:
                proc.join(timeout=5)
                code = proc.exitcode
                self.restart(i)
                raise WorkerCrashed(f"worker {i} (pid {proc.pid}) died with exit code {code}; restarted")
            if time.monotonic() > deadline:
                self.restart(i)
                raise WorkerCrashed(f"worker {i} (pid {proc.pid}) gave no reply in {timeout:.0f} s; restarted")
        if status == "error":
            raise EpisodeError(payload)
        return payload

    @staticmethod
    def _readable(conn: Connection) -> bool:
        try:
            return conn.poll(0)
        except (EOFError, OSError):
            return False

    def close(self) -> None:
        """Ask every worker to exit, then make sure they did."""
        for i, proc in enumerate(self.procs):
            if proc.is_alive():
                self.send(i, "close")
        for i, proc in enumerate(self.procs):
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            self.conns[i].close()


@dataclass
class VecStep:
    """What :meth:`VectorEnv.reset` and :meth:`VectorEnv.step` return for ``B`` envs.

    Attributes:
        obs: ``agentview``/``wrist`` ``uint8 [B,H,W,3]``, ``state`` ``float32 [B,8]`` (all-zero
            rows for envs whose ``error`` is set).
        success: ``bool [B]``, the simulator's success check after this step.
        error: per env, ``None`` or the error text; an errored env's episode is over.
        init_digest: per env, the initial-state fingerprint (``reset`` only; ``""`` on ``step``).
    """

    obs: dict[str, np.ndarray]
    success: np.ndarray
    error: list[str | None]
    init_digest: list[str] = field(default_factory=list)


class VectorEnv:
    """``num_envs`` simulators of one suite, each in its own worker process.

    Args:
        cfg: suite and protocol config.
        num_envs: number of parallel environments (= worker processes).
    """

    def __init__(self, cfg: SuiteConfig, num_envs: int) -> None:
        self.cfg = cfg
        self.pool = WorkerPool(cfg, num_envs)
        self.num_envs = num_envs

    @property
    def pids(self) -> list[int]:
        """Worker process ids, index = env id."""
        return self.pool.pids

    def _blank(self) -> dict[str, np.ndarray]:
        size = self.cfg.camera_size
        image = np.zeros((size, size, 3), dtype=np.uint8)
        return {"agentview": image, "wrist": image, "state": np.zeros(STATE_DIM, dtype=np.float32)}

    def _gather(self, env_ids: Sequence[int], timeout: float) -> tuple[list[Any], list[str | None]]:
        results: list[Any] = []
        errors: list[str | None] = []
        for i in env_ids:
            try:
                results.append(self.pool.recv(i, timeout))
                errors.append(None)
            except (WorkerCrashed, EpisodeError) as exc:
                results.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
        return results, errors

    def reset(self, env_ids: Sequence[int], specs: Sequence[EpisodeSpec]) -> VecStep:
        """Start episode ``specs[k]`` in env ``env_ids[k]`` (reset, init state, settle steps)."""
        assert len(env_ids) == len(specs), "one EpisodeSpec per env id"
        for i, spec in zip(env_ids, specs):
            self.pool.send(i, "start", spec)
        results, errors = self._gather(env_ids, self.cfg.step_timeout_s)
        obs = [r[0] if r is not None else self._blank() for r in results]
        digests = [r[1] if r is not None else "" for r in results]
        return VecStep(stack_obs(obs), np.zeros(len(env_ids), dtype=bool), errors, digests)

    def step(self, env_ids: Sequence[int], actions: np.ndarray) -> VecStep:
        """Apply ``actions`` (float ``[B,7]``) to envs ``env_ids`` (``B`` ids) in parallel."""
        actions = np.asarray(actions, dtype=np.float64)
        assert actions.shape == (len(env_ids), ACTION_DIM), (
            f"actions must be [B={len(env_ids)}, {ACTION_DIM}], got {actions.shape}")
        assert np.all(np.isfinite(actions)), "actions contain NaN or inf"
        for i, action in zip(env_ids, actions):
            self.pool.send(i, "step", action)
        results, errors = self._gather(env_ids, self.cfg.step_timeout_s)
        obs = [r[0] if r is not None else self._blank() for r in results]
        success = np.array([bool(r[1]) if r is not None else False for r in results])
        return VecStep(stack_obs(obs), success, errors)

    def close(self) -> None:
        """Stop all workers."""
        self.pool.close()

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def episode_specs(task_ids: Sequence[int], episodes_per_task: int, init_state_offset: int = 0,
                  num_init_states: int | None = None) -> list[EpisodeSpec]:
    """The fixed episode list: episode ``j`` of task ``i`` uses init state ``offset + j``.

    Raises:
        ValueError: more episodes than the task has init states.
    """
    if num_init_states is not None and init_state_offset + episodes_per_task > num_init_states:
        raise ValueError(f"{episodes_per_task} episodes from init state {init_state_offset} need more "
                         f"than the {num_init_states} init states per task")
    return [EpisodeSpec(task_id=t, init_index=init_state_offset + j, episode=j)
            for t in task_ids for j in range(episodes_per_task)]


def _plan(cfg: SuiteConfig, tasks: Sequence[int] | None, episodes_per_task: int,
          episodes: Sequence[EpisodeSpec] | None) -> tuple[dict[int, TaskInfo], list[EpisodeSpec]]:
    infos = {t.task_id: t for t in list_tasks(cfg)}
    if episodes is not None:
        specs = list(episodes)
    else:
        ids = list(infos) if tasks is None else list(tasks)
        unknown = [t for t in ids if t not in infos]
        if unknown:
            raise UnknownNameError(f"suite {cfg.name!r} has no task ids {unknown}; valid: {sorted(infos)}")
        limits = {infos[t].num_init_states for t in ids}
        specs = episode_specs(ids, episodes_per_task, cfg.init_state_offset,
                              min((n for n in limits if n is not None), default=None))
    return infos, specs


@dataclass
class _Running:
    spec: EpisodeSpec
    obs: dict[str, np.ndarray]
    digest: str
    steps: int = 0
    frames: list[np.ndarray] = field(default_factory=list)


def run_episodes(cfg: SuiteConfig, policy: Policy,
                 tasks: Sequence[int] | None = None, episodes_per_task: int = 1, workers: int = 1,
                 record_frames: bool = False, episodes: Sequence[EpisodeSpec] | None = None,
                 venv: VectorEnv | None = None,
                 on_episode: Callable[[EpisodeRecord], None] | None = None) -> list[EpisodeRecord]:
    """Run a batched policy on a suite's tasks in parallel workers.

    Args:
        cfg: suite and protocol config.
        policy: an :class:`avbr.policy.Policy` (``reset(env_ids, tasks)``, ``act(obs, env_ids)``).
        tasks: task ids to run (``None`` = all tasks of the suite).
        episodes_per_task: episodes per task; episode ``j`` starts from init state
            ``cfg.init_state_offset + j``.
        workers: parallel environments (ignored when ``venv`` is given).
        record_frames: keep each episode's upright agentview frames in ``EpisodeRecord.frames``.
        episodes: explicit episode list (overrides ``tasks``/``episodes_per_task``), e.g. to
            re-run some episodes; its order is the dispatch order.
        venv: reuse an open :class:`VectorEnv` (kept open); otherwise one is made and closed.
        on_episode: called with each record as soon as its episode ends.

    Returns:
        One :class:`EpisodeRecord` per episode, sorted by ``(task_id, episode)``.
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"{type(policy).__name__} is not an avbr.policy.Policy: implement reset(env_ids, tasks) "
                        "and act(obs, env_ids) -> float [B, 7]")
    infos, specs = _plan(cfg, tasks, episodes_per_task, episodes)
    horizon = max_steps(cfg)
    own_venv = venv is None
    venv = venv or VectorEnv(cfg, max(1, min(workers, len(specs))))
    queue: deque[EpisodeSpec] = deque(specs)
    running: dict[int, _Running] = {}
    records: list[EpisodeRecord] = []

    def finish(env_id: int, success: bool, error: str | None) -> None:
        run = running.pop(env_id)
        record = EpisodeRecord(task_id=run.spec.task_id, init_index=run.spec.init_index,
                               episode=run.spec.episode, success=success, length=run.steps,
                               error=error, language=infos[run.spec.task_id].language,
                               init_digest=run.digest, crashed=error is not None,  # env errors only
                               frames=np.stack(run.frames) if record_frames and run.frames else None)
        records.append(record)
        if on_episode is not None:
            on_episode(record)

    def fill(env_ids: list[int]) -> None:
        while env_ids and queue:
            starting = [(i, queue.popleft()) for i in env_ids[:len(queue)]]
            result = venv.reset([i for i, _ in starting], [s for _, s in starting])
            env_ids = []
            started: list[int] = []
            for k, (i, spec) in enumerate(starting):
                obs = {key: value[k] for key, value in result.obs.items()}
                running[i] = _Running(spec=spec, obs=obs, digest=result.init_digest[k])
                if result.error[k] is not None:
                    finish(i, False, result.error[k])
                    env_ids.append(i)
                else:
                    started.append(i)
            if started:
                policy.reset(started, [infos[running[i].spec.task_id] for i in started])

    try:
        fill(list(range(venv.num_envs)))
        while running:
            env_ids = sorted(running)
            obs = stack_obs([running[i].obs for i in env_ids])
            if record_frames:
                for k, i in enumerate(env_ids):
                    running[i].frames.append(obs["agentview"][k])
            actions = np.asarray(policy.act(obs, env_ids))
            result = venv.step(env_ids, actions)
            freed: list[int] = []
            for k, i in enumerate(env_ids):
                run = running[i]
                run.steps += 1
                run.obs = {key: value[k] for key, value in result.obs.items()}
                if result.error[k] is not None or result.success[k] or run.steps >= horizon:
                    finish(i, bool(result.success[k]), result.error[k])
                    freed.append(i)
            fill(freed)
    finally:
        if own_venv:
            venv.close()
    return sorted(records, key=lambda r: (r.task_id, r.episode))


def run_expert_episodes(cfg: SuiteConfig, tasks: Sequence[int] | None = None,
                        episodes_per_task: int = 1, workers: int = 1, record: bool = False,
                        episodes: Sequence[EpisodeSpec] | None = None,
                        on_episode: Callable[[EpisodeRecord], None] | None = None
                        ) -> list[EpisodeRecord]:
    """Run the scripted expert (:mod:`avbr.envs.experts`) for whole episodes inside the workers.

    Same episode protocol and crash handling as :func:`run_episodes`; episodes run
    asynchronously, each worker taking the next episode as soon as it is free. Once a task turns
    out to have no expert (``ExpertUnavailable``), its remaining episodes are recorded as failed
    with that error without running.

    Args:
        record: return the per-step demo arrays in ``EpisodeRecord.data`` (see
            :func:`avbr.envs.worker.demo_step`); images only when ``cfg.render``.
        on_episode: called with each record as soon as it arrives (e.g. to write it to disk and
            drop its arrays).

    Returns:
        Records sorted by ``(task_id, episode)``; ``data`` is ``None`` if ``on_episode`` cleared it.
    """
    infos, specs = _plan(cfg, tasks, episodes_per_task, episodes)
    pool = WorkerPool(cfg, max(1, min(workers, len(specs))))
    queue: deque[EpisodeSpec] = deque(specs)
    busy: dict[int, tuple[EpisodeSpec, float]] = {}
    records: list[EpisodeRecord] = []

    def done(record: EpisodeRecord) -> None:
        records.append(record)
        if on_episode is not None:
            on_episode(record)

    unavailable: dict[int, str] = {}  # task id -> ExpertUnavailable error (skip its episodes)

    def failed(spec: EpisodeSpec, error: str) -> EpisodeRecord:
        return EpisodeRecord(task_id=spec.task_id, init_index=spec.init_index, episode=spec.episode,
                             success=False, length=0, error=error,
                             language=infos[spec.task_id].language)

    try:
        while queue or busy:
            for i in range(len(pool)):
                while i not in busy and queue:
                    spec = queue.popleft()
                    if spec.task_id in unavailable:
                        done(failed(spec, unavailable[spec.task_id]))
                        continue
                    pool.send(i, "expert", spec, record)
                    busy[i] = (spec, time.monotonic())
            handles = [pool.conns[i] for i in busy] + [pool.procs[i].sentinel for i in busy]
            wait(handles, timeout=1.0)
            for i, (spec, started) in list(busy.items()):
                ready = pool._readable(pool.conns[i]) or not pool.procs[i].is_alive()
                overdue = time.monotonic() - started > cfg.episode_timeout_s
                if not (ready or overdue):
                    continue
                del busy[i]
                try:
                    done(pool.recv(i, timeout=0.0))
                except (WorkerCrashed, EpisodeError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    if "ExpertUnavailable" in error:
                        unavailable[spec.task_id] = error
                    done(failed(spec, error))
    finally:
        pool.close()
    return sorted(records, key=lambda r: (r.task_id, r.episode))
