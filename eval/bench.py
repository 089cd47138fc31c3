"""Benchmarks, one subcommand per area: ``python eval/bench.py <subcommand> [options]``.

Each benchmark is one module of :mod:`avbr.eval.benchmarks` registered as a subcommand
(:mod:`avbr.eval.benchmarks.registry`); this script is only the entry point.

* ``envs``: environment steps/s of :class:`avbr.envs.VectorEnv` for several worker counts, e.g.
  ``python eval/bench.py envs --suite robosuite_lift --workers 1 2 4 --out bench/envs.json``.
* ``experts``: scripted-expert success per task (simulator success check, no rendering by
  default), e.g. ``python eval/bench.py experts --suites robosuite_lift libero_object
  --episodes 20 --workers 2 --out bench/expert_success.json``.
* ``encoders``: feature-extraction images/s of every encoder adapter at batch 256 in bf16, e.g.
  ``python eval/bench.py encoders --out bench/encoders.json`` (CPU smoke: ``--batch 8 --iters 2``).
* ``datasets``: frame pairs/s of the ``lerobot`` source on a LIBERO-sized LeRobotDataset v3.0
  (two 256 px cameras, AV1 and H.264) on one pinned core, e.g.
  ``python eval/bench.py datasets --out bench/datasets.json``.
"""

import os
import sys

# Run by path, this script's folder (eval/) would come first on sys.path and shadow installed
# packages (eval/libero.py would shadow the LIBERO package): drop it first.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

from avbr.cli import entry_point  # noqa: E402
from avbr.eval.benchmarks.registry import main  # noqa: E402

if __name__ == "__main__":
    entry_point(main)()
