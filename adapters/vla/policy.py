"""The policy API shared by the VLA adapters (what ``eval/libero.py policy=pi0|openvla`` calls).

Observation batch (one env step, ``B`` parallel envs)::

    {"agentview": uint8 [B, H, W, 3] (upright RGB), "state": float [B, 8], "instruction": list[str]}

* ``predict_action(obs) -> float [B, chunk, 7]``: un-normalised LIBERO actions (7-D OSC delta,
  gripper -1 open / +1 closed) for the next ``chunk`` steps.
* ``select_action(obs) -> float [B, 7]``: one step; refills an action queue with
  ``predict_action`` when it is empty and executes ``n_action_steps`` of each chunk (lerobot's
  queue semantics).
* ``reset()``: clears the frame buffer and the action queue; call it at every episode start.

Frame buffer: two-frame encoders take ``(prev, curr)`` where ``prev`` is the frame
``frame_gap`` env steps earlier, as in training. Every call of ``select_action``,
``predict_action`` or ``observe`` pushes the current frame, so drive the policy with
``select_action`` every step, or call ``observe(frame)`` on the steps where you do not query it.
At the first steps of an episode, before ``frame_gap`` frames exist, ``prev`` is the oldest frame
in the buffer (``prev == curr`` at step 0: no motion, M = 0).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor, nn


class VLAPolicy(nn.Module):
    """Base class: frame buffer, action queue and the observation contract.

    Subclasses implement :meth:`compute_loss` and :meth:`predict_chunk`.

    Args:
        frame_gap: env steps between ``prev`` and ``curr`` (matches the training pairs).
        n_action_steps: actions of each predicted chunk that :meth:`select_action` executes.
    """

    def __init__(self, frame_gap: int, n_action_steps: int) -> None:
        super().__init__()
        if frame_gap < 1:
            raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
        self.frame_gap = frame_gap
        self.n_action_steps = n_action_steps
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames and the queued actions (episode start)."""
        self._frames: deque[Tensor] = deque(maxlen=self.frame_gap + 1)
        self._queue: deque[Tensor] = deque()

    def observe(self, frame: Tensor) -> None:
        """Push the current uint8 frame ``[B, H, W, 3]`` into the buffer."""
        frame = torch.as_tensor(frame)
        if self._frames and self._frames[-1].shape != frame.shape:
            raise ValueError(
                f"frame shape changed from {tuple(self._frames[-1].shape)} to {tuple(frame.shape)} "
                "without reset(); call policy.reset() at every episode start."
            )
        self._frames.append(frame)

    def _frame_pair(self) -> tuple[Tensor, Tensor]:
        return self._frames[0], self._frames[-1]

    @torch.no_grad()
    def predict_action(self, obs: dict) -> Tensor:
        """Observation batch -> un-normalised actions ``[B, chunk, 7]`` (also pushes the frame)."""
        for key in ("agentview", "state", "instruction"):
            if key not in obs:
                raise KeyError(f"observation batch lacks {key!r}; expected agentview, state, instruction")
        self.observe(obs["agentview"])
        prev, curr = self._frame_pair()
        state = torch.as_tensor(obs["state"], dtype=torch.float32)
        return self.predict_chunk(prev, curr, state, list(obs["instruction"]))

    @torch.no_grad()
    def select_action(self, obs: dict) -> Tensor:
        """One env step: ``[B, 7]`` from the queue, refilled by :meth:`predict_action`."""
        if not self._queue:
            chunk = self.predict_action(obs)  # [B, chunk, 7]
            self._queue.extend(chunk[:, : self.n_action_steps].transpose(0, 1))  # n x [B, 7]
        else:
            self.observe(obs["agentview"])
        return self._queue.popleft()

    def compute_loss(self, batch: dict) -> Tensor:
        """Training loss (scalar) for a batch from :class:`~avbr.adapters.vla.data.LiberoDemoDataset`."""
        raise NotImplementedError

    def predict_chunk(self, prev: Tensor, curr: Tensor, state: Tensor, instructions: list[str]) -> Tensor:
        """uint8 ``prev``/``curr`` ``[B, H, W, 3]``, state ``[B, S]`` -> actions ``[B, chunk, 7]``."""
        raise NotImplementedError
