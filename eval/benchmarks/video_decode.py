"""``bench video``: frame pairs/s per worker of the video sources, full vs reduced-resolution decode
vs pre-resized files, on generated 1080p and 480p H.264 mp4s."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from avbr.eval.benchmarks.registry import machine, subcommand


def _video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heights", type=int, nargs="+", default=[1080, 480], help="stored heights (16:9 frames)")
    p.add_argument("--clips", type=int, default=2, help="mp4s per height")
    p.add_argument("--frames", type=int, default=150, help="frames per clip (EgoDex: 30 fps)")
    p.add_argument("--gop", type=int, default=60, help="keyframe interval of the generated clips")
    p.add_argument("--img-size", type=int, default=224, help="the model's input side (decode-time scaling target)")
    p.add_argument("--short-side", type=int, default=256, help="shorter side of the pre-resized copy")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per variant (at least --min-draws pairs)")
    p.add_argument("--min-draws", type=int, default=20, help="fewest timed pairs per variant")
    p.add_argument("--core", type=int, default=0, help="CPU core the single-threaded variants are pinned to")
    p.add_argument("--workdir", default=None, help="where the clips are written (a temp folder by default)")
    p.add_argument("--keep-dir", default=None,
                   help="write the clips to <keep-dir>/<height>p and the resized copies to <keep-dir>/<height>p_resized "
                        "and keep them (a corpus for a training run) instead of a temp folder")


def _write_clip(path: Path, height: int, frames: int, gop: int, seed: int) -> None:
    """A 16:9 H.264 clip (x264 defaults: B-frames, preset medium; ``crf 20``): a smooth scene with
    mid-scale texture, twice the frame width, panned across, so that frames differ like camera motion."""
    width = round(height * 16 / 9) // 2 * 2
    rng = np.random.default_rng(seed)
    size = (2 * width, height)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 32, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 256, (height // 8, width // 4, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    scene = (0.7 * np.asarray(coarse, np.float32) + 0.3 * np.asarray(fine, np.float32)).astype(np.uint8)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "g": str(gop)}
        for i in range(frames):
            x = (i * width) // frames  # one frame width over the clip
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, x : x + width]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _mb_per_file(folder: Path) -> float:
    files = list(folder.iterdir())
    return round(sum(f.stat().st_size for f in files) / len(files) / 2**20, 2)


def _time_pairs(root: Path, img_size: int, short_side: int | None, threads: int, args: argparse.Namespace
                ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Pairs/s of ``video_folder`` over ``root``, each pair also resized and centre-cropped to
    ``img_size`` as the mixture does; pair ``i`` is drawn with ``default_rng([0, i])`` in every
    variant (the same pairs). Returns the figures and the first pairs' ``prev`` frames."""
    from avbr.data import VideoFolderSource, resize_center_crop  # noqa: PLC0415

    src = VideoFolderSource(str(root), decode_threads=threads)
    src.set_decode_short_side(short_side)
    for i in range(4):  # warm-up: opens every clip, fills the frame-count cache
        src.sample(np.random.default_rng([1, i]))
    firsts, n = [], 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    while n < args.min_draws or time.perf_counter() - t0 < args.seconds:
        s = src.sample(np.random.default_rng([0, n]))
        prev, _ = resize_center_crop(s["prev"], img_size), resize_center_crop(s["curr"], img_size)
        if n < 8:
            firsts.append(prev)
        n += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    src.reader.close()
    return {"pairs": n, "pairs_per_s": round(n / seconds, 1), "pairs_per_cpu_s": round(n / cpu, 1),
            "cpu_s_per_wall_s": round(cpu / seconds, 2), "decoded_shape": list(s["prev"].shape)}, firsts


@subcommand("video", _video_args)
def bench_video(args: argparse.Namespace) -> dict[str, Any]:
    """Pairs/s per worker: full decode + PIL resize vs decode-time scaling vs pre-resized files.

    Variants per stored height (``video_folder`` source, gap schedule ``k`` in 1..10):

    * ``full``: decode at the stored size, RGB at full resolution, PIL resize + crop (the old path);
    * ``reduced``: swscale to ``short_side_shape(img_size)`` while converting to RGB, then crop;
    * ``reduced_threads_auto``: the same with FFmpeg's decoder threads (not pinned: it uses every core);
    * ``preresized``: ``avbr.data.resize_videos`` copy at ``--short-side`` (its defaults: gop 15,
      ``tune=fastdecode``), then ``reduced``.

    The single-threaded variants run pinned to one core, so ``pairs_per_s`` is per worker;
    ``pairs_per_cpu_s`` divides by the process's CPU time, which stays meaningful when other jobs
    share the core (``machine.load_average_1_5_15``). ``mean_abs_diff_vs_full`` compares the first
    8 ``prev`` crops with the ``full`` variant's (uint8 levels).
    """
    from avbr.data.resize_videos import resize_corpus  # noqa: PLC0415

    pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    results = []
    with contextlib.nullcontext(args.keep_dir) if args.keep_dir else tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for height in args.heights:
            root, small = Path(tmp) / f"{height}p", Path(tmp) / f"{height}p_resized"
            root.mkdir(parents=True)
            t0 = time.perf_counter()
            for c in range(args.clips):
                _write_clip(root / f"clip{c}.mp4", height, args.frames, args.gop, seed=c)
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            resize_corpus(root, small, args.short_side)  # the tool's defaults
            resize_s = time.perf_counter() - t0
            row: dict[str, Any] = {"height": height, "write_s": round(write_s, 1), "resize_s": round(resize_s, 1),
                                   "mb_per_clip": _mb_per_file(root), "resized_mb_per_clip": _mb_per_file(small)}
            variants = [("full", root, None, 1), ("reduced", root, args.img_size, 1),
                        ("reduced_threads_auto", root, args.img_size, 0), ("preresized", small, args.img_size, 1)]
            reference = None
            for name, folder, short, threads in variants:
                if hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, {args.core} if threads == 1 else pinned)
                figures, firsts = _time_pairs(folder, args.img_size, short, threads, args)
                if reference is None:
                    reference = firsts
                diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(firsts, reference)]
                row[name] = figures | {"mean_abs_diff_vs_full": round(float(np.mean(diffs)), 2)}
                print(f"{height}p {name}: {figures['pairs_per_s']} pairs/s", flush=True)
            base = row["full"]["pairs_per_cpu_s"]
            row["speedup_per_cpu_s_vs_full"] = {n: round(row[n]["pairs_per_cpu_s"] / base, 2) for n, *_ in variants}
            results.append(row)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, pinned)
    return {"benchmark": "video", "source": "video_folder", "codec": "libx264", "fps": 30, "frames": args.frames,
            "clips": args.clips, "gop": args.gop, "img_size": args.img_size, "short_side": args.short_side,
            "pinned_core": args.core, "results": results, "machine": machine()}
