"""``bench datasets``: frame pairs/s of the ``lerobot`` source on a LIBERO-sized v3.0 dataset, one core."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avbr.eval.benchmarks.registry import machine, subcommand


def _datasets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=20, help="episodes of the synthetic dataset")
    p.add_argument("--length", type=int, default=150, help="frames per episode (LIBERO demos: ~100-300)")
    p.add_argument("--size", type=int, default=256, help="camera side in pixels (the LIBERO conversions: 256)")
    p.add_argument("--fps", type=int, default=10, help="frame rate (the LIBERO conversions: 10)")
    p.add_argument("--codecs", nargs="+", default=["libsvtav1", "libx264"],
                   help="encoders to measure (libsvtav1 = AV1, LeRobot's default; libx264 = H.264)")
    p.add_argument("--draws", type=int, default=3000, help="timed pairs per codec")
    p.add_argument("--warmup", type=int, default=200, help="untimed pairs first (opens files, fills caches)")
    p.add_argument("--core", type=int, default=0, help="CPU core the reader is pinned to")
    p.add_argument("--workdir", default=None, help="where the dataset is written (a temp folder by default)")


def _write_dataset(root: Path, codec: str, args: argparse.Namespace) -> float:
    """A v3.0 dataset of moving textured frames on two cameras; returns seconds spent writing."""
    from avbr.data.lerobot_writer import LeRobotWriter, VideoEncoding  # noqa: PLC0415

    rng = np.random.default_rng(0)
    # A smooth scene (coarse noise upsampled: large uniform regions and soft edges, like a
    # rendered tabletop) twice as wide as the camera, panned across: real motion to encode.
    coarse = Image.fromarray(rng.integers(0, 256, (12, 24, 3), dtype=np.uint8))
    base = np.asarray(coarse.resize((2 * args.size, args.size), Image.BILINEAR))
    t0 = time.perf_counter()
    writer = LeRobotWriter(root, fps=args.fps, video=VideoEncoding(codec=codec))
    for e in range(args.episodes):
        shift = (np.arange(args.length) * 2 + 7 * e) % args.size
        agent = np.stack([base[:, s : s + args.size] for s in shift])
        writer.add_episode({"agentview": agent, "wrist": agent[:, ::-1]},
                           state=rng.normal(size=(args.length, 8)), action=rng.normal(size=(args.length, 7)),
                           task=f"task {e % 10}")
    writer.close()
    return time.perf_counter() - t0


@subcommand("datasets", _datasets_args)
def bench_datasets(args: argparse.Namespace) -> dict[str, Any]:
    """Frame pairs/s of the ``lerobot`` source (v3.0, two cameras) on one pinned core.

    Each pair is ``source.sample(rng)`` with the default gap schedule (``k`` in 1..10): metadata
    and parquet columns cached, the consolidated mp4 kept open, a seek and a decode of the frames
    up to ``t + k`` (or two seeks when they are far apart), RGB conversion of the two frames.
    ``pairs_per_s`` is wall-clock; ``pairs_per_cpu_s`` divides by the process's CPU time, which
    stays meaningful when other jobs share the pinned core (see ``machine.load_average_1_5_15``).
    """
    from avbr.data import GapSchedule  # noqa: PLC0415
    from avbr.data.lerobot import LeRobotSource  # noqa: PLC0415

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for codec in args.codecs:
            root = Path(tmp) / codec
            write_s = _write_dataset(root, codec, args)
            src = LeRobotSource(str(root), gap=GapSchedule())
            rng = np.random.default_rng(0)
            for _ in range(args.warmup):
                src.sample(rng)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            for _ in range(args.draws):
                s = src.sample(rng)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            video_mb = sum(f.stat().st_size for f in (root / "videos").rglob("*.mp4")) / 2**20
            results.append({"codec": codec, "pairs_per_s": round(args.draws / seconds, 1),
                            "pairs_per_cpu_s": round(args.draws / cpu, 1),
                            "cpu_s_per_wall_s": round(cpu / seconds, 3), "frame_shape": list(s["prev"].shape),
                            "write_s": round(write_s, 1), "video_mb": round(video_mb, 2)})
            print(f"{codec}: {args.draws / seconds:.1f} pairs/s", flush=True)
            src.video.close()
    return {"benchmark": "datasets", "source": "lerobot", "codebase_version": "v3.0",
            "episodes": args.episodes, "length": args.length, "size": args.size, "fps": args.fps,
            "cameras": 2, "draws": args.draws, "pinned_core": args.core, "results": results, "machine": machine()}
