"""The one policy interface of the rollouts, and the per-environment state every policy keeps.

:func:`avbr.envs.run_episodes` drives every policy through :class:`Policy`: the frozen-encoder
``bc_mlp`` (:class:`avbr.eval.rollouts.rollout.EncoderPolicy`) and the VLAs Pi0 and OpenVLA
(:class:`avbr.adapters.vla.policy.VLAPolicy`). This module imports only numpy, so the simulator
package, the adapters and eval can all import it (dependency order avbr -> adapters -> eval; envs
apart).

Environments are named by integer env ids that stay fixed for a whole run. Each env runs one
episode at a time, and episodes in different envs start and end at different steps, so a policy
keeps its state per env id:

* ``reset(env_ids, tasks)``: episodes of ``tasks[k]`` start in env ``env_ids[k]``; everything the
  policy knew about those envs (frame history, queued actions, task) is dropped. Other envs are
  untouched.
* ``act(obs, env_ids) -> float32 [B, 7]``: one step of the ``B`` envs ``env_ids`` (any subset of
  the envs that were reset, in any order); row ``k`` of ``obs`` and of the result is env
  ``env_ids[k]``.

Observation batch (``avbr.envs.observations.stack_obs``; ARCHITECTURE.md)::

    {"agentview": uint8 [B, H, W, 3] upright RGB, "wrist": uint8 [B, H, W, 3] upright RGB,
     "state": float32 [B, 8] (eef position 3, eef axis-angle 3, gripper qpos 2)}

Actions: 7-D OSC delta, gripper -1 open / +1 closed. The task's language instruction arrives with
``reset`` (``tasks[k].language``), not with every step.

:class:`ActionChunker` is the per-env state shared by the chunked policies: a frame buffer (a
two-frame encoder needs the frame ``frame_gap`` steps back) and an action queue per env id. Envs
whose queue is empty at a step are planned *together* in one batched call.

Letters: ``B`` acting envs, ``P`` envs planned at this step, ``C`` chunk length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["ACTION_DIM", "EpisodeTask", "Policy", "PlanRequest", "ActionChunker"]

#: 7-D OSC delta action (``avbr.envs.ACTION_DIM``).
ACTION_DIM = 7


class EpisodeTask(Protocol):
    """What a policy learns about an episode's task at ``reset`` (``avbr.envs.TaskInfo`` has it).

    Attributes:
        task_id: index of the task in its suite.
        language: the task's natural-language instruction (the VLA prompt).
    """

    task_id: int
    language: str


@runtime_checkable
class Policy(Protocol):
    """A batched policy with per-environment state (see the module docstring for the contract)."""

    def reset(self, env_ids: Sequence[int], tasks: Sequence[EpisodeTask]) -> None:
        """New episodes of ``tasks[k]`` start in env ``env_ids[k]``; forget those envs' state."""

    def act(self, obs: Mapping[str, np.ndarray], env_ids: Sequence[int]) -> np.ndarray:
        """Actions ``float32 [B, 7]`` for the ``B`` envs ``env_ids``, row ``k`` = ``obs`` row ``k``."""


@dataclass
class PlanRequest:
    """The envs that need a new action chunk at this step.

    Attributes:
        env_ids: ``int [P]`` env ids.
        prev: ``{camera: uint8 [P, H, W, 3]}`` the frame ``frame_gap`` steps back in each env's
            episode; before that many steps exist, the episode's first frame (``prev == curr`` at
            step 0), the rule of the training pairs ``max(t - k, 0)``.
        curr: ``{camera: uint8 [P, H, W, 3]}`` the current frames.
        state: ``float32 [P, 8]`` proprio.
        tasks: the ``P`` tasks given to ``reset``.
        steps: ``int [P]`` steps each episode has taken before this one (0 on its first).
    """

    env_ids: np.ndarray
    prev: dict[str, np.ndarray]
    curr: dict[str, np.ndarray]
    state: np.ndarray
    tasks: list[EpisodeTask]
    steps: np.ndarray


@dataclass
class _EnvState:
    task: EpisodeTask
    frames: deque[dict[str, np.ndarray]]
    queue: deque[np.ndarray] = field(default_factory=deque)
    steps: int = 0


class ActionChunker:
    """Per-env frame buffers and action queues; plans the envs whose queue ran out in one batch.

    Args:
        frame_gap: ``k`` of the ``(o_{t-k}, o_t)`` pair (>= 1).
        n_action_steps: actions of each planned chunk executed open-loop (>= 1, at most ``C``).
        cameras: observation keys kept in the frame buffer.
    """

    def __init__(self, frame_gap: int, n_action_steps: int, cameras: Sequence[str] = ("agentview",)) -> None:
        if frame_gap < 1:
            raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
        if n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}")
        self.frame_gap, self.n_action_steps, self.cameras = frame_gap, n_action_steps, tuple(cameras)
        self.envs: dict[int, _EnvState] = {}

    def reset(self, env_ids: Sequence[int], tasks: Sequence[EpisodeTask]) -> None:
        """Start fresh state for ``env_ids`` (one task each)."""
        if len(env_ids) != len(tasks):
            raise ValueError(f"reset got {len(env_ids)} env ids but {len(tasks)} tasks; pass one task per env")
        for env_id, task in zip(env_ids, tasks):
            self.envs[int(env_id)] = _EnvState(task=task, frames=deque(maxlen=self.frame_gap + 1))

    def queued(self, env_id: int) -> int:
        """Actions left in ``env_id``'s queue."""
        return len(self.envs[int(env_id)].queue)

    def act(self, obs: Mapping[str, np.ndarray], env_ids: Sequence[int],
            plan: Callable[[PlanRequest], np.ndarray]) -> np.ndarray:
        """Push the frames, plan the envs with an empty queue, pop one action per env.

        Args:
            obs: the observation batch (module docstring), ``B`` rows.
            env_ids: ``B`` env ids, each reset before.
            plan: ``PlanRequest -> float [P, C, 7]`` action chunks (``C >= n_action_steps``).

        Returns:
            ``float32 [B, 7]``.
        """
        missing = [int(e) for e in env_ids if int(e) not in self.envs]
        if missing:
            raise KeyError(f"envs {missing} were never reset; call reset(env_ids, tasks) at every episode start")
        rows = [self.envs[int(e)] for e in env_ids]
        for k, env in enumerate(rows):
            env.frames.append({c: obs[c][k] for c in self.cameras})
        todo = [k for k, env in enumerate(rows) if not env.queue]
        if todo:
            request = PlanRequest(
                env_ids=np.asarray([int(env_ids[k]) for k in todo]),
                prev={c: np.stack([rows[k].frames[0][c] for k in todo]) for c in self.cameras},
                curr={c: np.stack([rows[k].frames[-1][c] for k in todo]) for c in self.cameras},
                state=np.asarray(obs["state"], dtype=np.float32)[todo],
                tasks=[rows[k].task for k in todo],
                steps=np.asarray([rows[k].steps for k in todo]),
            )
            chunks = np.asarray(plan(request), dtype=np.float32)  # [P, C, 7]
            if chunks.shape[0] != len(todo) or chunks.shape[1] < self.n_action_steps or chunks.shape[2] != ACTION_DIM:
                raise ValueError(f"plan returned {chunks.shape}; expected [{len(todo)}, >= {self.n_action_steps}, {ACTION_DIM}]")
            for j, k in enumerate(todo):
                rows[k].queue.extend(chunks[j, : self.n_action_steps])
        for env in rows:
            env.steps += 1
        return np.stack([env.queue.popleft() for env in rows])
