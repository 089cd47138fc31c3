"""Sharded evaluation: a deterministic part of the episode plan per job, and the merge.

The plan of a run is every ``(seed, task_id, episode)`` with episode ``j`` starting from init
state ``suite.init_state_offset + j``. Shard ``i`` of ``n`` (``shard.index=i shard.count=n``)
takes the plan's entries at positions ``i, i + n, i + 2n, ...`` of its sorted order, so shards
are disjoint, cover the plan, and each holds a mix of tasks and seeds (equal load). Every shard
trains the same policy heads (same demos, same seeds, CPU training is deterministic), so a shard
is an ordinary run of part of the plan: it resumes, writes videos and its own ``results.json``.

:func:`merge_shards` puts the shard folders back together: it checks they are shards of one
plan (same config but for ``shard`` and ``out_dir``, same heads, same code, same demo files),
that together they hold every planned episode exactly once, and writes the ``results.json``,
``episodes.jsonl``, CSV and summary that an unsharded run of the same plan writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbr.cli import UserError
from avbr.eval.rollouts.results import (EpisodeLog, EpisodeResult, build_results, load_results, summary_markdown,
                                        validate_results, write_csv)

#: Result fields that must agree between shards of one plan (besides the config).
_SHARED = ("suite", "encoder", "policy", "seeds", "selection", "provenance", "encoder_source", "demo_files",
           "heldout")


class ShardMismatchError(UserError, ValueError):
    """The folders given to the merge are not the shards of one evaluation plan."""


@dataclass
class ShardConfig:
    """Which part of the episode plan this run evaluates.

    Attributes:
        index: this shard, ``0 <= index < count``.
        count: number of shards (1 = the whole plan).
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard.index={self.index} shard.count={self.count}: need 0 <= index < count")


def shard_keys(keys: Iterable[tuple[int, int, int]], index: int, count: int) -> set[tuple[int, int, int]]:
    """The ``(seed, task_id, episode)`` keys of shard ``index`` of ``count``: every ``count``-th
    key of the sorted plan, starting at ``index``."""
    return set(sorted(keys)[index::count])


def _unsharded_config(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    return {**config, "shard": {"index": 0, "count": 1}, "out_dir": out_dir}


def merge_shards(folders: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Merge the output folders of every shard of one plan into ``out``; returns ``results.json``.

    Raises:
        ShardMismatchError: the folders disagree on the plan, a shard is missing or repeated, or
            an episode is missing or duplicated.
    """
    out = Path(out)
    shards = [load_results(f) for f in folders]
    count = {r["config"]["shard"]["count"] for r in shards}
    indices = sorted(r["config"]["shard"]["index"] for r in shards)
    if len(count) != 1 or indices != list(range(count.pop())):
        raise ShardMismatchError(f"expected every shard 0..n-1 of one plan exactly once, got indices {indices} "
                                 f"of counts {sorted({r['config']['shard']['count'] for r in shards})}")
    base = _unsharded_config(shards[0]["config"], str(out))
    for folder, res in zip(folders, shards):
        differ = sorted(k for k in set(base) | set(res["config"])
                        if k not in ("shard", "out_dir") and base.get(k) != res["config"].get(k))
        differ += [k for k in _SHARED if res.get(k) != shards[0].get(k)]
        if differ:
            raise ShardMismatchError(f"{folder} is not a shard of the same plan as {folders[0]}: differs in {differ}")
    episodes: dict[tuple[int, int, int], EpisodeResult] = {}
    for folder in folders:
        for ep in EpisodeLog(Path(folder) / "episodes.jsonl").results():
            if ep.key in episodes:
                raise ShardMismatchError(f"episode {ep.key} (seed, task, episode) is in more than one shard")
            episodes[ep.key] = ep
    planned = {(s, t["task_id"], j) for s in base["seeds"] for t in shards[0]["per_task"]
               for j in range(base["episodes_per_task"])}
    missing = sorted(planned - set(episodes))
    if missing:
        raise ShardMismatchError(f"{len(missing)} planned episode(s) are in no shard, e.g. {missing[:5]}: "
                                 "finish (resume) the shards first")
    first = shards[0]
    results = build_results([episodes[k] for k in sorted(planned)], suite=first["suite"], encoder=first["encoder"],
                            policy=first["policy"], tasks={t["task_id"]: t["language"] for t in first["per_task"]},
                            seeds=first["seeds"], config=base, provenance=first["provenance"],
                            selection=first["selection"],
                            extra={k: first[k] for k in ("encoder_source", "heldout", "demo_files") if k in first})
    validate_results(results)
    out.mkdir(parents=True, exist_ok=True)
    log = EpisodeLog(out / "episodes.jsonl")
    for key in sorted(planned):
        if key not in log:
            log.append(episodes[key])
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_csv(results, out / "results.csv")
    (out / "summary.md").write_text(summary_markdown(results))
    (out / "shards.json").write_text(json.dumps([str(Path(f).resolve()) for f in folders], indent=2) + "\n")
    return results
