"""The rollout-side policy: frame history, batched encoder inference, action chunks, timing.

:class:`EncoderPolicy` plugs into :func:`avbr.envs.run_episodes` (``__call__(batch)`` and
``reset(env_ids, tasks)``). At every step it appends each env's upright frames to that env's
history; envs whose action queue is empty are encoded *together* (one batched
``encoder.encode(o_{t-k}, o_t)``), the policy head predicts a chunk ``[B, C, 7]`` for them and the
first ``n_action_steps`` actions are queued and executed open-loop. The pair rule matches
training (:func:`avbr.eval.rollouts.policy_data.pair_indices`): before step ``k`` the previous frame is
the episode's first frame.

Optionally the features of every planning step are kept per episode (``record_features``) for
later probing; :meth:`EncoderPolicy.pop_features` hands them out when the episode ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avbr.envs import PolicyBatch, TaskInfo
from avbr.eval.rollouts.policies import TrainedPolicy
from avbr.eval.rollouts.policy_data import FeatureSpec, encode_frames


@dataclass
class Timers:
    """Seconds spent in the main process, by stage, and how often each ran."""

    encoder_s: float = 0.0
    policy_s: float = 0.0
    encoder_calls: int = 0
    encoded_frames: int = 0
    policy_steps: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass
class _EnvState:
    history: deque[dict[str, np.ndarray]]
    queue: deque[np.ndarray] = field(default_factory=deque)
    task_index: int = 0
    features: list[np.ndarray] = field(default_factory=list)
    plan_steps: list[int] = field(default_factory=list)


class EncoderPolicy:
    """Frozen encoder + trained head as a batched env policy.

    Args:
        encoder: ``avbr.adapters.EncoderAdapter`` (frozen, ``eval()``).
        head: the trained policy head.
        spec: readout, cameras, gap ``k`` (as used for the demos).
        task_order: task ids in the head's one-hot order.
        n_action_steps: actions executed per predicted chunk.
        record_features: keep the features of each planning step per env.
        batch_size: frames per encoder forward.
    """

    def __init__(self, encoder: Any, head: TrainedPolicy, spec: FeatureSpec, task_order: Sequence[int],
                 n_action_steps: int, record_features: bool = False, batch_size: int = 64) -> None:
        self.encoder, self.head, self.spec = encoder, head, spec
        self.task_index = {t: i for i, t in enumerate(task_order)}
        self.n_action_steps = n_action_steps
        self.record_features = record_features
        self.batch_size = batch_size
        self.envs: dict[int, _EnvState] = {}
        self.timers = Timers()

    def reset(self, env_ids: Sequence[int], tasks: Sequence[TaskInfo]) -> None:
        """New episodes start in ``env_ids``: clear their frame history and action queue."""
        for env_id, task in zip(env_ids, tasks):
            if task.task_id not in self.task_index:
                raise KeyError(f"task {task.task_id} was not in the policy's training tasks {sorted(self.task_index)}")
            self.envs[int(env_id)] = _EnvState(history=deque(maxlen=self.spec.gap + 1),
                                               task_index=self.task_index[task.task_id])

    def pop_features(self, env_id: int) -> dict[str, np.ndarray]:
        """The recorded features of ``env_id``'s episode: ``features [P, D]``, ``steps [P]``
        (policy step of each planning point); empty if the episode never started."""
        env = self.envs.get(env_id)
        if env is None:
            return {"features": np.zeros((0, 0), np.float32), "steps": np.zeros(0, np.int64)}
        out = {"features": np.stack(env.features) if env.features else np.zeros((0, 0), np.float32),
               "steps": np.asarray(env.plan_steps, dtype=np.int64)}
        env.features, env.plan_steps = [], []
        return out

    def __call__(self, batch: PolicyBatch) -> np.ndarray:
        """Actions ``float [B, 7]`` for the ``B`` running envs of ``batch``."""
        rows = [self.envs[int(e)] for e in batch.env_ids]
        for k, env in enumerate(rows):
            env.history.append({c: batch.obs[c][k] for c in self.spec.cameras})
        plan = [k for k, env in enumerate(rows) if not env.queue]
        if plan:
            t0 = time.perf_counter()
            prev = {c: np.stack([rows[k].history[0][c] for k in plan]) for c in self.spec.cameras}
            curr = {c: batch.obs[c][plan] for c in self.spec.cameras}
            features = encode_frames(self.encoder, self.spec, prev, curr, self.batch_size)  # [P, D]
            t1 = time.perf_counter()
            chunks = self.head.predict(torch.from_numpy(features), torch.from_numpy(batch.obs["state"][plan]),
                                       torch.tensor([rows[k].task_index for k in plan]))  # [P, C, 7]
            t2 = time.perf_counter()
            self.timers.encoder_s += t1 - t0
            self.timers.policy_s += t2 - t1
            self.timers.encoder_calls += 1
            self.timers.encoded_frames += len(plan) * len(self.spec.cameras)
            for j, k in enumerate(plan):
                rows[k].queue.extend(chunks[j, : self.n_action_steps])
                if self.record_features:
                    rows[k].features.append(features[j])
                    rows[k].plan_steps.append(int(batch.steps[k]))
        self.timers.policy_steps += len(rows)
        return np.stack([env.queue.popleft() for env in rows])
