"""The learning-rate schedule of every training loop in the project (pretraining, VLA fine-tuning).

A pure function of the step, as in nanoGPT's ``get_lr``: a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warmup, then cosine to ``min_lr``.

    Args:
        step: optimiser steps done before this one.
        lr: peak rate, reached at the last warmup step (``step = warmup_steps - 1``).
        min_lr: final rate, reached at ``total_steps`` and held after it.
        warmup_steps: length of the linear warmup from ``lr / warmup_steps`` (0: none).
        total_steps: the step where the cosine ends.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))
