"""Compare evaluation runs: markdown + self-contained HTML, bar chart with Wilson error bars.

    python eval/report.py 'runs=[/tmp/runs/lift/two_stream,/tmp/runs/lift/dinov2]' out=reports/eval
    python eval/report.py 'runs=[/tmp/runs/*/*]' out=reports/eval      # glob patterns work

Each run is an ``eval/libero.py`` output folder (its ``results.json`` is validated). Runs of one
suite share a table only when they share tasks, demo files (sha256), episodes per task, seeds,
camera size and episode protocol; otherwise the report is refused naming the differing keys
(``allow_unequal=true`` reports anyway, the differences printed above the tables). Writes into
``out``:

* ``report.md`` -- per suite: a per-task table (rate, Wilson 95% interval, successes/episodes), the
  suite row, crashed counts, paired comparisons of every two runs over the same episodes (exact
  McNemar p, paired bootstrap 95% interval of the difference); the chart, links to every run's
  videos, and the config keys that differ between runs;
* ``report.html`` -- the same, self-contained (the chart inlined as base64 PNG; videos linked);
* ``success.png`` -- one panel per suite, one bar per run, Wilson 95% error bars, ``s/n`` and the
  interval written on each bar, small-n bars hatched, random-init encoders in red.
"""

import os
import sys

# Run by path, eval/ comes first on sys.path and would shadow installed packages: drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from typing import Any  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from avbr.cli import entry_point  # noqa: E402
from avbr.eval.reporting.compare import ReportConfig, build_report  # noqa: E402

ConfigStore.instance().store(name="report_schema", node=ReportConfig)


@entry_point
@hydra.main(version_base="1.3", config_path="pkg://avbr.configs", config_name="report")
def main(cfg: Any) -> None:
    """Hydra entry point: build the report and print where it is."""
    paths = build_report(OmegaConf.to_object(cfg))
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


if __name__ == "__main__":
    main()
