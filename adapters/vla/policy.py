"""The rollout side of the VLA adapters: :class:`avbr.policy.Policy` with per-environment state.

:func:`avbr.envs.run_episodes` drives a VLA like every other policy (the contract and the
observation batch are in :mod:`avbr.policy`):

* ``reset(env_ids, tasks)``: new episodes start in ``env_ids``; their frame buffers and action
  queues are cleared and ``tasks[k].language`` becomes env ``env_ids[k]``'s prompt;
* ``act(obs, env_ids) -> float32 [B, 7]``: un-normalised LIBERO actions (7-D OSC delta, gripper
  -1 open / +1 closed). Each env keeps its own frame buffer and action queue
  (:class:`avbr.policy.ActionChunker`); envs whose queue is empty are planned together in one
  :meth:`VLAPolicy.predict_chunk` call, and ``n_action_steps`` of each chunk are executed
  (lerobot's queue semantics).

Frame buffer: two-frame encoders take ``(prev, curr)`` where ``prev`` is the agentview frame
``frame_gap`` env steps earlier in the same env, as in training; before ``frame_gap`` steps exist
it is the episode's first frame (``prev == curr`` at step 0: no motion, M = 0).

The model-level API that fine-tuning uses is separate and batch-only:

* ``compute_loss(batch) -> scalar`` for a batch of :class:`~avbr.adapters.vla.data.LiberoDemoDataset`;
* ``predict_chunk(prev, curr, state, instructions) -> float [B, chunk, 7]`` (un-normalised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from avbr.policy import ActionChunker, EpisodeTask, PlanRequest

#: the camera the VLAs read (one camera, as in training: ``data.camera=agentview_rgb``).
CAMERA = "agentview"


class VLAPolicy(nn.Module):
    """Base class: per-env frame buffers and action queues around :meth:`predict_chunk`.

    Subclasses implement :meth:`compute_loss` and :meth:`predict_chunk`.

    Args:
        frame_gap: env steps between ``prev`` and ``curr`` (matches the training pairs).
        n_action_steps: actions of each predicted chunk executed before re-planning.
    """

    def __init__(self, frame_gap: int, n_action_steps: int) -> None:
        super().__init__()
        self.chunker = ActionChunker(frame_gap, n_action_steps, cameras=(CAMERA,))

    def reset(self, env_ids: Sequence[int], tasks: Sequence[EpisodeTask]) -> None:
        """New episodes of ``tasks`` start in ``env_ids``: clear their frames and queued actions."""
        self.chunker.reset(env_ids, tasks)

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], env_ids: Sequence[int]) -> np.ndarray:
        """One env step of the ``B`` envs ``env_ids``: un-normalised actions ``float32 [B, 7]``."""
        return self.chunker.act(obs, env_ids, self._plan)

    def _plan(self, request: PlanRequest) -> np.ndarray:
        """Chunks ``[P, chunk, 7]`` for the envs whose queue ran out, each prompted with its task."""
        chunk = self.predict_chunk(
            torch.from_numpy(request.prev[CAMERA]),
            torch.from_numpy(request.curr[CAMERA]),
            torch.from_numpy(request.state),
            [task.language for task in request.tasks],
        )
        return chunk.float().cpu().numpy()

    def compute_loss(self, batch: dict) -> Tensor:
        """Training loss (scalar) for a batch from :class:`~avbr.adapters.vla.data.LiberoDemoDataset`."""
        raise NotImplementedError

    def predict_chunk(self, prev: Tensor, curr: Tensor, state: Tensor, instructions: list[str]) -> Tensor:
        """uint8 ``prev``/``curr`` ``[B, H, W, 3]``, state ``[B, S]`` -> actions ``[B, chunk, 7]``."""
        raise NotImplementedError
