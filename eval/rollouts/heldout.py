"""The held-out check of an evaluation: no demonstration may start from a scene the run rolls out.

Before anything is trained, every demo of every evaluated task is compared with the evaluation
init states the run will use (:func:`avbr.envs.registry.eval_init_states`: LIBERO's stored states,
robosuite's seeded scenes simulated without cameras). A demo's first state is its
``init_scene_state`` attribute (the state right after the reset, written by ``make_demos``), or
else ``states[0]`` (official LIBERO files, older AVBR files); a demo also overlaps when its
``init_source`` says it came from one of those init-state indices (older AVBR files: the
``avbr_init_index`` attribute). Scene equality: :func:`avbr.envs.scenes.matching_states`.

An overlap stops the run (:class:`EvalScenesInDemosError`) unless ``demos.allow_eval_scenes``;
``results.json["heldout"]`` records the counts either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avbr.envs.config import SuiteConfig
from avbr.envs.registry import eval_init_states
from avbr.envs.scenes import EVAL_INIT_STATE, matching_states


class EvalScenesInDemosError(RuntimeError):
    """Some demos start from the evaluation's own init states."""


@dataclass(frozen=True)
class DemoStart:
    """Where one demo started.

    Attributes:
        demo: ``demo_<i>`` key.
        source: ``init_source`` attribute (``heldout_seed`` / ``eval_init_state``), or
            ``unrecorded``.
        seed: ``init_seed`` (or ``avbr_init_index``), ``None`` when unrecorded.
        state: ``float64 [S]`` flattened MuJoCo state of the first scene.
    """

    demo: str
    source: str
    seed: int | None
    state: np.ndarray


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def demo_starts(path: str | Path) -> list[DemoStart]:
    """The first scene of every demo in a LIBERO-layout file, in numeric demo order."""
    starts = []
    with h5py.File(path, "r") as f:
        data = f["data"]
        for key in sorted((k for k in data.keys() if k.startswith("demo_")), key=lambda k: int(k.split("_")[1])):
            group = data[key]
            attrs = group.attrs
            state = attrs["init_scene_state"] if "init_scene_state" in attrs else group["states"][0]
            if "init_source" in attrs:
                source, seed = _text(attrs["init_source"]), int(attrs["init_seed"])
            elif "avbr_init_index" in attrs:  # AVBR files before held-out scenes: eval init states
                source, seed = EVAL_INIT_STATE, int(attrs["avbr_init_index"])
            else:
                source, seed = "unrecorded", None
            starts.append(DemoStart(key, source, seed, np.asarray(state, dtype=np.float64)))
    return starts


def check_heldout(suite: SuiteConfig, files: Mapping[int, Path], indices: Sequence[int],
                  allow_eval_scenes: bool = False) -> dict[str, Any]:
    """Compare every demo's first scene with the evaluation init states ``indices`` of its task.

    Args:
        suite: the evaluated suite.
        files: ``task_id -> demo file``.
        indices: init-state indices the run rolls out (the same for every task).
        allow_eval_scenes: record overlaps instead of raising.

    Returns:
        ``{"demos_checked", "overlapping_demos", "eval_init_states", "allowed", "sources",
        "overlaps"}`` (``sources``: demos per ``init_source``; ``overlaps``: the first 20, each
        ``{"task_id", "file", "demo", "eval_init_index"}``).

    Raises:
        EvalScenesInDemosError: an overlap and not ``allow_eval_scenes``.
    """
    indices = list(indices)
    overlaps: list[dict[str, Any]] = []
    sources: Counter[str] = Counter()
    checked = 0
    for task_id, path in sorted(files.items()):
        states = eval_init_states(suite, task_id, indices)
        for start in demo_starts(path):
            checked += 1
            sources[start.source] += 1
            hits = {indices[i] for i in matching_states(start.state, states)}
            if start.source == EVAL_INIT_STATE and start.seed in indices:
                hits.add(start.seed)
            if hits:
                overlaps.append({"task_id": task_id, "file": str(path), "demo": start.demo,
                                 "eval_init_index": min(hits)})
    report = {"demos_checked": checked, "overlapping_demos": len(overlaps), "eval_init_states": len(indices),
              "allowed": allow_eval_scenes, "sources": dict(sorted(sources.items())), "overlaps": overlaps[:20]}
    if overlaps and not allow_eval_scenes:
        shown = "; ".join(f"task {o['task_id']} {Path(o['file']).name}:{o['demo']} = init state {o['eval_init_index']}"
                          for o in overlaps[:3])
        raise EvalScenesInDemosError(
            f"{len(overlaps)} of {checked} demos start from evaluation init states this run rolls out ({shown}"
            f"{' ...' if len(overlaps) > 3 else ''}): a policy scored on the scenes it was trained on is not a "
            f"result.\nRegenerate the demos from held-out scenes (`python -m avbr.envs.make_demos suite={suite.name} "
            f"out=<demos dir>`, or delete the files and let demos.generate=auto do it), or run anyway with "
            f"demos.allow_eval_scenes=true (results.json records the overlap).")
    return report
