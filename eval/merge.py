"""Merge the output folders of a sharded evaluation into one run folder.

    python eval/merge.py outputs/eval/lift/shard0of4 outputs/eval/lift/shard1of4 ... --out outputs/eval/lift/merged
    python eval/merge.py 'outputs/eval/lift/shard*of4' --out outputs/eval/lift/merged     # glob patterns work

Each folder is an ``eval/libero.py`` run with ``shard.index=i shard.count=n`` (every ``i`` once);
the merged ``results.json`` equals the one an unsharded run of the same plan writes
(:func:`avbr.eval.rollouts.shards.merge_shards`). Videos stay in the shard folders.
"""

import os
import sys

# Run by path, eval/ comes first on sys.path and would shadow installed packages: drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import glob  # noqa: E402

from avbr.cli import entry_point  # noqa: E402
from avbr.eval.rollouts.results import format_rate  # noqa: E402
from avbr.eval.rollouts.shards import merge_shards  # noqa: E402


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Parse the shard folders (or glob patterns) and ``--out``, merge, print the suite result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", nargs="+", help="shard output folders or glob patterns")
    parser.add_argument("--out", required=True, help="folder for the merged results")
    args = parser.parse_args(argv)
    folders = sorted({m for pattern in args.shards for m in (glob.glob(pattern) or [pattern])})
    results = merge_shards(folders, args.out)
    print(f"merged {len(folders)} shard(s) into {args.out}: {format_rate(results['suite_success'])}")


if __name__ == "__main__":
    main()
