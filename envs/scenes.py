"""Held-out scenes: where demonstrations start, kept apart from the evaluation init states.

The benchmark's init states are for evaluation only (``/work/shared/ARCHITECTURE.md``, "Held-out
scenes"). Two kinds of initial scene exist, named by :data:`EVAL_INIT_STATE` and
:data:`HELDOUT_SEED` (``EpisodeSpec.source``, and the ``init_source`` attribute of every demo):

* ``eval_init_state`` -- ``init_index`` is a benchmark init state: LIBERO's fixed state ``j`` of
  the task, or for robosuite the scene sampled after ``np.random.seed(j)``. Evaluation uses these.
* ``heldout_seed`` -- ``init_index`` is a seed ``>= HELDOUT_SEED_BASE`` for the suite's own
  placement sampler: LIBERO seeds numpy (``ControlEnv.seed``) and resets, so the task's BDDL
  placement regions draw a fresh scene, which is then compared with the task's 50 init states
  (:class:`SceneCollision` if it equals one); robosuite resets after ``np.random.seed(seed)``, and
  its evaluation seeds are refused at or above the base, so the two ranges are disjoint.

Scenes are compared as flattened MuJoCo states ``[time, qpos, qvel]`` without the time entry;
equal means every entry within :data:`SAME_SCENE_ATOL`. A replayed init state matches exactly, while two
sampled scenes differ by more than 1 cm somewhere (measured on libero_object task 0: the
closest pair of its 50 init states differs by 0.022, a sampled scene by >= 0.015 from all 50).
"""

from __future__ import annotations

import numpy as np

#: ``EpisodeSpec.source`` of a benchmark init state (what evaluation rolls out).
EVAL_INIT_STATE = "eval_init_state"
#: ``EpisodeSpec.source`` of a scene drawn by the suite's placement sampler from a held-out seed.
HELDOUT_SEED = "heldout_seed"
SOURCES = (EVAL_INIT_STATE, HELDOUT_SEED)
#: First held-out seed; evaluation init indices must stay below it.
HELDOUT_SEED_BASE = 1_000_000
#: Two states are the same scene when every entry (time excluded) is within this.
SAME_SCENE_ATOL = 1e-6


class SceneCollision(RuntimeError):
    """A held-out seed sampled a scene equal to an evaluation init state."""


def matching_states(state: np.ndarray, candidates: np.ndarray, atol: float = SAME_SCENE_ATOL) -> list[int]:
    """Rows of ``candidates`` that are the same scene as ``state``.

    Args:
        state: ``float [S]`` flattened MuJoCo state ``[time, qpos, qvel]``.
        candidates: ``float [N, S']``; rows of another length (another model) never match.

    Returns:
        Indices of the matching rows.
    """
    state = np.asarray(state, dtype=np.float64).ravel()
    candidates = np.asarray(candidates, dtype=np.float64).reshape(len(candidates), -1)
    if candidates.shape[1] != state.shape[0] or len(candidates) == 0:
        return []
    diff = np.abs(candidates[:, 1:] - state[None, 1:]).max(axis=1)
    return [int(i) for i in np.flatnonzero(diff <= atol)]


def check_source(source: str, init_index: int) -> None:
    """Refuse an init index outside its source's range (seeds never enter the eval range).

    Raises:
        ValueError: unknown source, an eval init index ``>= HELDOUT_SEED_BASE`` or a held-out
            seed below it.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown scene source {source!r}; expected one of {SOURCES}")
    if source == EVAL_INIT_STATE and not 0 <= init_index < HELDOUT_SEED_BASE:
        raise ValueError(f"evaluation init index {init_index} is outside [0, {HELDOUT_SEED_BASE}): indices from "
                         f"{HELDOUT_SEED_BASE} on are held-out demo seeds")
    if source == HELDOUT_SEED and init_index < HELDOUT_SEED_BASE:
        raise ValueError(f"held-out seed {init_index} is below {HELDOUT_SEED_BASE}, inside the evaluation range")
