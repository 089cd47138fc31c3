"""The benchmark registry and CLI: one subcommand per benchmark module, JSON out.

Each module of :mod:`avbr.eval.benchmarks` registers one subcommand with :func:`subcommand`: a
function taking the parsed arguments and returning a JSON-serialisable dict, which :func:`main`
prints and, with ``--out``, writes. ``python eval/bench.py <subcommand> --help`` lists the options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

from avbr.provenance import provenance

Subcommand = Callable[[argparse.Namespace], dict[str, Any]]
_SUBCOMMANDS: dict[str, tuple[Subcommand, Callable[[argparse.ArgumentParser], None]]] = {}

# The modules that register a subcommand, imported by :func:`main` (each one benchmark).
BENCHMARK_MODULES = ("envs", "experts", "eval_rollouts", "pretrain", "encoders", "datasets", "video_decode")


def subcommand(name: str, add_args: Callable[[argparse.ArgumentParser], None]
               ) -> Callable[[Subcommand], Subcommand]:
    """Register ``fn(args) -> dict`` as subcommand ``name``; ``add_args`` declares its options."""

    def wrap(fn: Subcommand) -> Subcommand:
        if name in _SUBCOMMANDS:
            raise ValueError(f"bench subcommand {name!r} is already registered")
        _SUBCOMMANDS[name] = (fn, add_args)
        return fn

    return wrap


def machine() -> dict[str, Any]:
    """The host a benchmark ran on: cores and load, plus :func:`avbr.provenance.provenance`
    (commit or package version, versions, host, platform, UTC time)."""
    return {"cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg(), "provenance": provenance()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the chosen subcommand, print and optionally write its JSON."""
    for module in BENCHMARK_MODULES:
        importlib.import_module(f"avbr.eval.benchmarks.{module}")
    parser = argparse.ArgumentParser(description="Benchmarks, one subcommand per area; JSON out.")
    subs = parser.add_subparsers(dest="command", required=True)
    for name, (fn, add_args) in sorted(_SUBCOMMANDS.items()):
        sub = subs.add_parser(name, help=(fn.__doc__ or "").splitlines()[0])
        sub.add_argument("--out", default=None, help="write the JSON result here")
        add_args(sub)
    args = parser.parse_args(argv)
    result = _SUBCOMMANDS[args.command][0](args)
    text = json.dumps(result, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return result
