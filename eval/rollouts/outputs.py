"""An evaluation's outputs, written so that a failing writer never loses what the run measured.

What the run measured is ``episodes.jsonl`` (appended as episodes finish) and ``results.json``
(built from it), written first and atomically by :func:`write_results`. Everything else is an
optional view of them: rollout videos, ``results.csv``, ``summary.md``, ``timing.json`` and the
W&B run summary. :class:`OptionalOutputs` runs each optional writer, reports a failure on stderr
at once and carries on with the others; :meth:`OptionalOutputs.raise_if_failed` then ends the run
with one error listing every failure, once everything that could be written is on disk.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class OptionalOutputsError(RuntimeError):
    """Some optional outputs failed; ``results.json`` and ``episodes.jsonl`` are complete."""


def write_results(results: Mapping[str, Any], path: Path) -> Path:
    """Write ``results.json`` atomically (a temporary file, then a rename): never half a file."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


class OptionalOutputs:
    """Runs optional output writers of the run in ``out``, collecting their failures instead of raising.

    Args:
        out: the run's output folder (named in the final error).
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.failures: list[str] = []

    def write(self, name: str, writer: Callable[[], object], path: Path | None = None) -> bool:
        """Run ``writer()``; returns whether it succeeded.

        On any exception the failure is printed to stderr and remembered, and ``path`` (the file
        the writer makes, if any) is removed, so that no stale or partial copy sits beside the new
        ``results.json``.
        """
        try:
            writer()
        except Exception as exc:  # noqa: BLE001 - any failure of an optional output is reported, not fatal
            message = f"{name}: {type(exc).__name__}: {exc}"
            self.failures.append(message)
            print(f"[eval] WARNING: could not write {message}", file=sys.stderr, flush=True)
            if path is not None:
                path.unlink(missing_ok=True)
            return False
        return True

    def raise_if_failed(self) -> None:
        """Raise :class:`OptionalOutputsError` listing the failures, if there were any."""
        if self.failures:
            raise OptionalOutputsError(
                f"the run's results are complete in {self.out / 'results.json'} and {self.out / 'episodes.jsonl'}, "
                f"but {len(self.failures)} optional output(s) could not be written:\n  " + "\n  ".join(self.failures)
                + "\nFix the cause and run the same command again: it resumes, runs no finished episode again and "
                "rewrites results.csv, summary.md and timing.json (videos of finished episodes are not re-recorded).")
