"""The held-out check of an evaluation: no demonstration may start from a scene the run rolls out.

Before anything is trained, every demo of every evaluated task is compared with the evaluation
init states the run will use (:func:`avbr.envs.registry.eval_init_states`: LIBERO's stored states,
robosuite's seeded scenes simulated without cameras). A demo's first state comes from its
:class:`~avbr.eval.rollouts.demo_sets.DemoSet` (hdf5: the ``init_scene_state`` attribute written
by ``make_demos``, else ``states[0]``; LeRobotDataset: the ``avbr/init_scene_state`` episode
column); a demo also overlaps when its ``init_source`` says it came from one of those init-state
indices. Scene equality: :func:`avbr.envs.scenes.matching_states`. A demo with neither a state nor
a recorded source (third-party LeRobot conversions) cannot be checked: it is counted in
``unverified_demos``.

An overlap stops the run (:class:`EvalScenesInDemosError`) unless ``demos.allow_eval_scenes``;
``results.json["heldout"]`` records the counts either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from avbr.envs.config import SuiteConfig
from avbr.envs.registry import eval_init_states
from avbr.envs.scenes import EVAL_INIT_STATE, matching_states
from avbr.eval.rollouts.demo_sets import UNRECORDED, DemoSet


class EvalScenesInDemosError(RuntimeError):
    """Some demos start from the evaluation's own init states."""


def check_heldout(suite: SuiteConfig, files: Mapping[int, DemoSet], indices: Sequence[int],
                  allow_eval_scenes: bool = False) -> dict[str, Any]:
    """Compare every demo's first scene with the evaluation init states ``indices`` of its task.

    Args:
        suite: the evaluated suite.
        files: ``task_id -> demo set``.
        indices: init-state indices the run rolls out (the same for every task).
        allow_eval_scenes: record overlaps instead of raising.

    Returns:
        ``{"demos_checked", "overlapping_demos", "unverified_demos", "eval_init_states", "allowed",
        "sources", "overlaps"}`` (``sources``: demos per ``init_source``; ``unverified_demos``:
        demos with neither a first state nor a recorded source; ``overlaps``: the first 20, each
        ``{"task_id", "file", "demo", "eval_init_index"}``).

    Raises:
        EvalScenesInDemosError: an overlap and not ``allow_eval_scenes``.
    """
    indices = list(indices)
    overlaps: list[dict[str, Any]] = []
    sources: Counter[str] = Counter()
    checked = unverified = 0
    for task_id, demos in sorted(files.items()):
        states = eval_init_states(suite, task_id, indices)
        for start in demos.starts():
            checked += 1
            sources[start.source] += 1
            unverified += start.source == UNRECORDED and start.state.size == 0
            hits = {indices[i] for i in matching_states(start.state, states)}
            if start.source == EVAL_INIT_STATE and start.seed in indices:
                hits.add(start.seed)
            if hits:
                overlaps.append({"task_id": task_id, "file": demos.label, "demo": start.demo,
                                 "eval_init_index": min(hits)})
    report = {"demos_checked": checked, "overlapping_demos": len(overlaps), "unverified_demos": unverified,
              "eval_init_states": len(indices),
              "allowed": allow_eval_scenes, "sources": dict(sorted(sources.items())), "overlaps": overlaps[:20]}
    if overlaps and not allow_eval_scenes:
        shown = "; ".join(f"task {o['task_id']} {o['file']}:{o['demo']} = init state {o['eval_init_index']}"
                          for o in overlaps[:3])
        raise EvalScenesInDemosError(
            f"{len(overlaps)} of {checked} demos start from evaluation init states this run rolls out ({shown}"
            f"{' ...' if len(overlaps) > 3 else ''}): a policy scored on the scenes it was trained on is not a "
            f"result.\nRegenerate the demos from held-out scenes (`python -m avbr.envs.make_demos suite={suite.name} "
            f"out=<demos dir>`, or delete the files and let demos.generate=auto do it), or run anyway with "
            f"demos.allow_eval_scenes=true (results.json records the overlap).")
    return report
