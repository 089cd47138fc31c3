"""The rollout-side policy: frame history, batched encoder inference, action chunks, timing.

:class:`EncoderPolicy` implements :class:`avbr.policy.Policy` (``reset(env_ids, tasks)``,
``act(obs, env_ids)``), which :func:`avbr.envs.run_episodes` drives. Its per-env state is an
:class:`avbr.policy.ActionChunker`: at every step each env's upright frames join that env's
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avbr.eval.rollouts.policies import TrainedPolicy
from avbr.eval.rollouts.policy_data import FeatureSpec, encode_frames
from avbr.policy import ActionChunker, EpisodeTask, PlanRequest


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


class EncoderPolicy:
    """Frozen encoder + trained head as a batched env policy (:class:`avbr.policy.Policy`).

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
        self.record_features = record_features
        self.batch_size = batch_size
        self.chunker = ActionChunker(spec.gap, n_action_steps, spec.cameras)
        self.features: dict[int, list[np.ndarray]] = {}
        self.plan_steps: dict[int, list[int]] = {}
        self.timers = Timers()

    def reset(self, env_ids: Sequence[int], tasks: Sequence[EpisodeTask]) -> None:
        """New episodes start in ``env_ids``: clear their frame history, action queue and features."""
        for task in tasks:
            if task.task_id not in self.task_index:
                raise KeyError(f"task {task.task_id} was not in the policy's training tasks {sorted(self.task_index)}")
        self.chunker.reset(env_ids, tasks)
        for env_id in env_ids:
            self.features[int(env_id)], self.plan_steps[int(env_id)] = [], []

    def pop_features(self, env_id: int) -> dict[str, np.ndarray]:
        """The recorded features of ``env_id``'s episode: ``features [P, D]``, ``steps [P]``
        (policy step of each planning point); empty if the episode never started."""
        features, steps = self.features.get(env_id, []), self.plan_steps.get(env_id, [])
        out = {"features": np.stack(features) if features else np.zeros((0, 0), np.float32),
               "steps": np.asarray(steps, dtype=np.int64)}
        self.features[env_id], self.plan_steps[env_id] = [], []
        return out

    def act(self, obs: Mapping[str, np.ndarray], env_ids: Sequence[int]) -> np.ndarray:
        """Actions ``float32 [B, 7]`` for the ``B`` envs ``env_ids`` (see :mod:`avbr.policy`)."""
        actions = self.chunker.act(obs, env_ids, self._plan)
        self.timers.policy_steps += len(env_ids)
        return actions

    def _plan(self, request: PlanRequest) -> np.ndarray:
        """Encode the planned envs' frame pairs in one batch and predict their chunks ``[P, C, 7]``."""
        t0 = time.perf_counter()
        features = encode_frames(self.encoder, self.spec, request.prev, request.curr, self.batch_size)  # [P, D]
        t1 = time.perf_counter()
        task_index = torch.tensor([self.task_index[t.task_id] for t in request.tasks])
        chunks = self.head.predict(torch.from_numpy(features), torch.from_numpy(request.state), task_index)  # [P, C, 7]
        t2 = time.perf_counter()
        self.timers.encoder_s += t1 - t0
        self.timers.policy_s += t2 - t1
        self.timers.encoder_calls += 1
        self.timers.encoded_frames += len(request.env_ids) * len(self.spec.cameras)
        if self.record_features:
            for j, env_id in enumerate(request.env_ids.tolist()):
                self.features[env_id].append(features[j])
                self.plan_steps[env_id].append(int(request.steps[j]))
        return chunks
