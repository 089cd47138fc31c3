"""Progress bars for long stages (tqdm: count, rate and ETA) and their one-line end summary.

Bars are shown only when both stdout and stderr are terminals and neither ``AVBR_PROGRESS=0`` nor
the command-line switch ``progress=false`` / ``--no-progress`` (:mod:`avbr.cli`) turned them off;
in logs and CI nothing but the summary line is printed. ``tqdm`` is used because it already
computes smoothed rates and ETAs and redraws a single terminal line.

    bar = progress_bar(total=len(specs), desc="rollouts", unit="ep")
    for ...:
        bar.update(1)
        bar.set_postfix_str("successes 3/7, 410 ep/h")
    finish(bar, "50 episodes, 41 successes (82%)")
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

from tqdm import tqdm

__all__ = ["finish", "note", "per_hour", "progress_bar", "progress_enabled"]


def progress_enabled() -> bool:
    """Whether bars are drawn: stdout and stderr are TTYs and ``AVBR_PROGRESS`` is not ``0``."""
    if os.environ.get("AVBR_PROGRESS", "1").lower() in ("0", "false"):
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str,
                 unit: str = "it", initial: int = 0, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar (on stderr) that is silent unless :func:`progress_enabled` and ``enabled``.

    A disabled bar keeps its ``desc`` and start time, so :func:`finish` works; callers count
    their own totals for the summary (a disabled tqdm does not count).
    """
    bar = tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True,
               disable=not (enabled and progress_enabled()), **kwargs)
    if bar.disable:  # a disabled tqdm keeps neither its description nor its start time
        bar.desc, bar.start_t = desc, time.time()
    return bar


def per_hour(count: float, start_t: float) -> float:
    """``count`` per hour of wall time since ``start_t`` (``time.time()``)."""
    return 3600.0 * count / max(time.time() - start_t, 1e-9)


def note(bar: tqdm, text: str) -> None:
    """Print a log line on stdout above the bar (without breaking it) and flush."""
    bar.write(text, file=sys.stdout)
    sys.stdout.flush()


def finish(bar: tqdm, summary: str) -> str:
    """Close ``bar`` and print ``"<desc>: <summary> in <elapsed>"`` on stdout (also without a TTY)."""
    bar.close()
    elapsed = time.time() - bar.start_t
    line = f"[{bar.desc}] {summary} in {tqdm.format_interval(elapsed)}"
    print(line, flush=True)
    return line
