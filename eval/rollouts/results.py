"""Evaluation results: Wilson intervals, the per-episode log (resume) and the versioned results file.

Files in a run's output folder:

* ``episodes.jsonl`` -- one JSON object per finished episode, appended (and flushed) as soon as
  the episode ends. A restarted evaluation reads it back and skips the episodes it holds, so a
  killed run resumes where it stopped. Keys: :data:`EPISODE_KEYS`.
* ``results.json`` -- schema :data:`SCHEMA_VERSION`, written by :func:`build_results` from the
  episode log and :func:`avbr.provenance.code_provenance` only (no clocks, no host names), so a
  resumed run ends with the same file as an uninterrupted one. :func:`validate_results` checks
  every field; :func:`load_results` also reads version 1 files (see :func:`upgrade_results`).
* ``results.csv`` -- one row per task plus one ``ALL`` row (:func:`write_csv`), each naming the code.
* ``summary.md`` -- the same table in markdown (:func:`summary_markdown`).

Success rates are reported with Wilson score 95% intervals (Wilson 1927; the interval LeRobot
and most robot-learning papers quote for binomial success counts), which stay inside [0, 1] and
behave at 0/N and N/N where the normal approximation does not.

Crashed episodes (``crashed``: the simulator raised or its worker died; infrastructure, not the
policy) are not failures: they are left out of every success count, listed under ``crashes``,
counted per task and suite, and retried when the run is resumed (:class:`EpisodeLog` does not
count them as done).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avbr.cli import UserError
from avbr.provenance import describe_commit

#: Version of the ``results.json`` layout; bump it when a field changes meaning or moves.
#: 2: top-level ``git`` and ``versions`` moved into ``provenance`` (with ``package``); ``git.commit``
#: may be null (code run from an installed package).
SCHEMA_VERSION = 2
#: z for a two-sided 95% interval.
Z_95 = 1.959963984540054
#: Keys of one line of ``episodes.jsonl`` (and of ``results.json["episodes"][i]``).
EPISODE_KEYS = ("seed", "task_id", "episode", "init_index", "success", "length", "error",
                "init_digest", "video", "crashed")
#: A run stops once more than this fraction of its planned episodes crashed.
CRASH_LIMIT = 0.10


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` Bernoulli trials.

    Returns:
        ``(low, high)`` in ``[0, 1]``; ``(0.0, 1.0)`` when ``n == 0`` (nothing is known).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact bounds at 0/n and n/n (the formula gives them up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class EpisodeResult:
    """One finished evaluation episode (a line of ``episodes.jsonl``).

    Attributes:
        seed: evaluation seed (policy-head training seed; see ``configs/libero.yaml``).
        task_id: task index within the suite.
        episode: position ``j`` within the task's episodes.
        init_index: init state the episode started from.
        success: the simulator's success check held at some step.
        length: policy steps taken (settle steps excluded).
        error: ``None`` or the error text.
        init_digest: fingerprint of the initial MuJoCo state.
        video: file name of the episode's video inside ``videos/``, or ``None``.
        crashed: an infrastructure failure (``error`` says which); not a success or failure.
    """

    seed: int
    task_id: int
    episode: int
    init_index: int
    success: bool
    length: int
    error: str | None = None
    init_digest: str = ""
    video: str | None = None
    crashed: bool = False

    @property
    def key(self) -> tuple[int, int, int]:
        """``(seed, task_id, episode)``: what identifies an episode across restarts."""
        return self.seed, self.task_id, self.episode


class EpisodeLog:
    """Append-only ``episodes.jsonl``: the resume record of one evaluation run.

    A partially written last line (the process was killed mid-write) is ignored on reading and
    overwritten by the next append.

    Args:
        path: the jsonl file (created on the first append).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._done: dict[tuple[int, int, int], EpisodeResult] = {}
        self._valid_bytes = 0
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        raw = self.path.read_bytes()
        offset = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn final write
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            result = EpisodeResult(**{k: row[k] for k in EPISODE_KEYS if k in row})
            self._done[result.key] = result
            offset += len(line)
        self._valid_bytes = offset

    def __contains__(self, key: tuple[int, int, int]) -> bool:
        """Whether ``key`` finished (a crashed episode is not finished: it is run again)."""
        return key in self._done and not self._done[key].crashed

    def __len__(self) -> int:
        return len(self._done)

    def results(self) -> list[EpisodeResult]:
        """Every logged episode, sorted by ``(seed, task_id, episode)``."""
        return [self._done[k] for k in sorted(self._done)]

    def append(self, result: EpisodeResult) -> None:
        """Write one episode and flush it to disk (a duplicate of a finished key raises; a
        crashed one is superseded)."""
        if result.key in self:
            raise ValueError(f"episode {result.key} (seed, task, episode) is already logged in {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "r+b" if self.path.exists() else "wb") as f:
            f.truncate(self._valid_bytes)
            f.seek(self._valid_bytes)
            f.write((json.dumps(asdict(result), sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
            self._valid_bytes = f.tell()
        self._done[result.key] = result


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"successes": successes, "episodes": n, "success_rate": successes / n if n else 0.0,
            "ci95_low": low, "ci95_high": high}


def build_results(episodes: Sequence[EpisodeResult], *, suite: str, encoder: str, policy: str,
                  tasks: Mapping[int, str], seeds: Sequence[int], config: Mapping[str, Any],
                  provenance: Mapping[str, Any], selection: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble ``results.json`` (schema :data:`SCHEMA_VERSION`) from the episode log.

    Args:
        episodes: every finished episode.
        suite, encoder, policy: registry names of what was evaluated.
        tasks: ``task_id -> language instruction`` of the evaluated tasks.
        seeds: evaluation seeds.
        config: the resolved Hydra config.
        provenance: :func:`avbr.provenance.code_provenance` (``git``, ``package``, ``versions``;
            no clock or host, so a resumed run writes the same file).
        selection: how the policy head was chosen, per seed (epoch, val loss); never rollouts.
        extra: further top-level fields (``encoder_source``: random init or which weights;
            ``heldout``: the demo/eval scene overlap check).
    """
    crashes = [e for e in episodes if e.crashed]
    episodes = [e for e in episodes if not e.crashed]
    by_task: dict[int, list[EpisodeResult]] = {t: [] for t in tasks}
    for ep in episodes:
        by_task.setdefault(ep.task_id, []).append(ep)
    per_task = []
    for task_id in sorted(by_task):
        eps = by_task[task_id]
        per_task.append({"task_id": task_id, "language": tasks.get(task_id, ""),
                         "seeds": sorted({e.seed for e in eps}),
                         "mean_length": sum(e.length for e in eps) / len(eps) if eps else 0.0,
                         "errors": sum(e.error is not None for e in eps),
                         "crashed": sum(e.task_id == task_id for e in crashes),
                         **_rate(sum(e.success for e in eps), len(eps))})
    total = _rate(sum(e.success for e in episodes), len(episodes))
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite, "encoder": encoder, "policy": policy,
        "seeds": list(seeds),
        "suite_success": {**total, "tasks": len(per_task), "crashed": len(crashes),
                          "mean_task_success": (sum(t["success_rate"] for t in per_task) / len(per_task)
                                                if per_task else 0.0)},
        "per_task": per_task,
        "episodes": [asdict(e) for e in sorted(episodes, key=lambda e: e.key)],
        "crashes": [{k: asdict(e)[k] for k in ("seed", "task_id", "episode", "init_index", "error")}
                    for e in sorted(crashes, key=lambda e: e.key)],
        "selection": dict(selection),
        "config": dict(config), "provenance": dict(provenance),
        **dict(extra or {}),
    }


class ResultsSchemaError(UserError, ValueError):
    """``results.json`` does not follow the schema; the message names the field."""


_TOP = {"schema_version": int, "suite": str, "encoder": str, "policy": str, "seeds": list,
        "suite_success": dict, "per_task": list, "episodes": list, "selection": dict,
        "config": dict, "provenance": dict}
_RATE = {"successes": int, "episodes": int, "success_rate": float, "ci95_low": float,
         "ci95_high": float}
_EPISODE = {"seed": int, "task_id": int, "episode": int, "init_index": int, "success": bool,
            "length": int}


def _check_fields(obj: Mapping[str, Any], spec: Mapping[str, type], where: str) -> None:
    for key, kind in spec.items():
        if key not in obj:
            raise ResultsSchemaError(f"{where}: missing field {key!r}")
        value = obj[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else (
            isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
        if not ok:
            raise ResultsSchemaError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")


def _check_rate(rate: Mapping[str, Any], where: str) -> None:
    _check_fields(rate, _RATE, where)
    s, n = rate["successes"], rate["episodes"]
    if not 0 <= s <= n:
        raise ResultsSchemaError(f"{where}: successes={s} not in [0, episodes={n}]")
    expected = s / n if n else 0.0
    if not math.isclose(rate["success_rate"], expected, abs_tol=1e-9):
        raise ResultsSchemaError(f"{where}.success_rate={rate['success_rate']} but {s}/{n}={expected}")
    low, high = wilson_interval(s, n)
    if not (math.isclose(rate["ci95_low"], low, abs_tol=1e-9) and math.isclose(rate["ci95_high"], high, abs_tol=1e-9)):
        raise ResultsSchemaError(f"{where}: interval [{rate['ci95_low']}, {rate['ci95_high']}] is not the "
                                 f"Wilson 95% interval [{low}, {high}] of {s}/{n}")


def validate_results(results: Mapping[str, Any]) -> None:
    """Check a ``results.json`` dict against schema :data:`SCHEMA_VERSION`.

    Checks types, that every rate matches its counts, that intervals are the Wilson intervals,
    that per-task counts match the episode list and that the suite count is their sum.

    Raises:
        ResultsSchemaError: naming the first bad field.
    """
    _check_fields(results, {"schema_version": int}, "results")
    if results["schema_version"] != SCHEMA_VERSION:
        raise ResultsSchemaError(f"results.schema_version is {results['schema_version']}; this code validates "
                                 f"version {SCHEMA_VERSION} (read files with load_results, which upgrades older ones)")
    _check_fields(results, _TOP, "results")
    for i, ep in enumerate(results["episodes"]):
        _check_fields(ep, _EPISODE, f"episodes[{i}]")
        if ep.get("crashed"):
            raise ResultsSchemaError(f"episodes[{i}] is crashed; crashed episodes belong in results.crashes")
    _check_rate(results["suite_success"], "suite_success")
    counted = {}
    for i, task in enumerate(results["per_task"]):
        where = f"per_task[{i}]"
        _check_fields(task, {"task_id": int, "language": str, "seeds": list}, where)
        _check_rate(task, where)
        counted[task["task_id"]] = (task["successes"], task["episodes"])
    from_episodes: dict[int, tuple[int, int]] = {}
    for ep in results["episodes"]:
        s, n = from_episodes.get(ep["task_id"], (0, 0))
        from_episodes[ep["task_id"]] = (s + int(ep["success"]), n + 1)
    for task_id, (s, n) in from_episodes.items():
        if counted.get(task_id) != (s, n):
            raise ResultsSchemaError(f"per_task task {task_id} counts {counted.get(task_id)} but the episode "
                                     f"list has {s}/{n}")
    total = results["suite_success"]
    if (total["successes"], total["episodes"]) != (sum(s for s, _ in counted.values()),
                                                    sum(n for _, n in counted.values())):
        raise ResultsSchemaError("suite_success counts are not the sum of the per-task counts")
    _check_fields(results["provenance"], {"git": dict, "versions": dict}, "results.provenance")
    if "commit" not in results["provenance"]["git"]:
        raise ResultsSchemaError("results.provenance.git: missing field 'commit'")
    commit = results["provenance"]["git"]["commit"]
    if commit is not None and not isinstance(commit, str):
        raise ResultsSchemaError(f"results.provenance.git.commit: expected str or null, got {type(commit).__name__}")


def upgrade_results(results: dict[str, Any]) -> dict[str, Any]:
    """Lift an older ``results.json`` dict to :data:`SCHEMA_VERSION` (in memory; the file is untouched).

    Version 1 kept ``git`` and ``versions`` at the top level and had no ``package`` record; they
    become ``provenance = {"git", "versions", "package": None}``. Newer dicts pass through.
    """
    if results.get("schema_version") == 1:
        results = dict(results)
        results["provenance"] = {"git": results.pop("git", {}), "versions": results.pop("versions", {}),
                                 "package": None}
        results["schema_version"] = SCHEMA_VERSION
    return results


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``results.json`` (a run folder is accepted too); older versions are upgraded."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass the output folder of an `eval/libero.py` run")
    with open(path) as f:
        results = upgrade_results(json.load(f))
    try:
        validate_results(results)
    except ResultsSchemaError as exc:
        raise ResultsSchemaError(f"{path}: {exc}") from exc
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def format_rate(rate: Mapping[str, Any]) -> str:
    """``'62.0% [48.2, 74.1] (31/50)'``: rate, Wilson 95% interval, counts."""
    return (f"{_pct(rate['success_rate'])}% [{_pct(rate['ci95_low'])}, {_pct(rate['ci95_high'])}] "
            f"({rate['successes']}/{rate['episodes']})")


def summary_markdown(results: Mapping[str, Any]) -> str:
    """A markdown summary: header, per-task table and the suite row."""
    total = results["suite_success"]
    source = results.get("encoder_source") or {}
    lines = [f"# {results['suite']} / {results['encoder']} / {results['policy']}", ""]
    if source.get("random_init"):
        lines += ["**Random-init encoder (control): no pretrained weights were used.**", ""]
    elif source:
        lines += [f"Encoder weights: `{source['source']}`"
                  + (" (newest pretraining export, encoder.source unset)" if source.get("selected") == "newest_export"
                     else ""), ""]
    lines += [
             f"Suite success: **{format_rate(total)}** over {total['episodes']} episodes, "
             f"{total['tasks']} task(s), seeds {results['seeds']} (Wilson 95% interval). "
             f"Code {describe_commit(results['provenance'])}.",
             "", "Policy head chosen on held-out demo validation loss (never on rollouts): "
             + ", ".join(f"seed {s}: epoch {v['epoch']}, {v['criterion']} "
                         f"{'n/a' if v['val_loss'] is None else format(v['val_loss'], '.4f')}"
                         for s, v in results["selection"].items()), ""]
    heldout = results.get("heldout")
    if heldout:
        lines += [f"Held-out scenes: {heldout['overlapping_demos']} of {heldout['demos_checked']} demos start from "
                  f"an evaluation init state" + (" (**allowed by demos.allow_eval_scenes: scores include training "
                                                 "scenes**)" if heldout["overlapping_demos"] else "") + ".", ""]
    if results.get("crashes"):
        lines += [f"Crashed (infrastructure, not counted as failures; retried on resume): "
                  f"{len(results['crashes'])} episode(s): "
                  + "; ".join(f"seed {c['seed']} task {c['task_id']} episode {c['episode']}: "
                              f"{(c['error'] or '').strip().splitlines()[-1][:120] if c['error'] else '?'}"
                              for c in results["crashes"][:5]), ""]
    lines += ["| task | instruction | success | 95% CI | episodes | mean length | crashed |",
              "|---:|---|---:|---|---:|---:|---:|"]
    for t in results["per_task"]:
        lines.append(f"| {t['task_id']} | {t['language']} | {_pct(t['success_rate'])}% | "
                     f"[{_pct(t['ci95_low'])}, {_pct(t['ci95_high'])}] | {t['episodes']} | "
                     f"{t['mean_length']:.1f} | {t.get('crashed', 0)} |")
    lines.append(f"| ALL | | {_pct(total['success_rate'])}% | [{_pct(total['ci95_low'])}, "
                 f"{_pct(total['ci95_high'])}] | {total['episodes']} | | {total.get('crashed', 0)} |")
    return "\n".join(lines) + "\n"


def write_csv(results: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """One row per task plus an ``ALL`` row: suite, encoder, policy, task, counts, rate, interval, code.

    ``code`` is :func:`avbr.provenance.describe_commit` of the run (the commit, or the package
    version and file hash outside git), so rows of several runs stay attributable once concatenated.
    """
    cols = ("suite", "encoder", "policy", "task_id", "language", "successes", "episodes",
            "success_rate", "ci95_low", "ci95_high", "code")
    code = describe_commit(results["provenance"])
    rows: Iterable[Mapping[str, Any]] = [*results["per_task"],
                                         {**results["suite_success"], "task_id": "ALL", "language": ""}]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for row in rows:
            writer.writerow([results["suite"], results["encoder"], results["policy"],
                             *(row[c] for c in cols[3:-1]), code])
