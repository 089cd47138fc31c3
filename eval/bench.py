"""Benchmarks, one subcommand per area: ``python eval/bench.py <subcommand> [options]``.

Subcommands are registered with :func:`subcommand`; each is one function taking the parsed
arguments and returning a JSON-serialisable dict, which is printed and, with ``--out``, written.

* ``envs``: environment steps/s of :class:`avbr.envs.VectorEnv` for several worker counts, e.g.
  ``python eval/bench.py envs --suite robosuite_lift --workers 1 2 4 --out bench/envs.json``.
* ``experts``: scripted-expert success per task (simulator success check, no rendering by
  default), e.g. ``python eval/bench.py experts --suites robosuite_lift libero_object
  --episodes 20 --workers 2 --out bench/expert_success.json``.
* ``encoders``: feature-extraction images/s of every encoder adapter at batch 256 in bf16, e.g.
  ``python eval/bench.py encoders --out bench/encoders.json`` (CPU smoke: ``--batch 8 --iters 2``).
"""

from __future__ import annotations

import os
import sys

# Run by path, this script's folder (eval/) would come first on sys.path and shadow installed
# packages (e.g. a future eval/libero.py would shadow the LIBERO package): drop it first.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

Subcommand = Callable[[argparse.Namespace], dict[str, Any]]
_SUBCOMMANDS: dict[str, tuple[Subcommand, Callable[[argparse.ArgumentParser], None]]] = {}


def subcommand(name: str, add_args: Callable[[argparse.ArgumentParser], None]
               ) -> Callable[[Subcommand], Subcommand]:
    """Register ``fn(args) -> dict`` as subcommand ``name``; ``add_args`` declares its options."""

    def wrap(fn: Subcommand) -> Subcommand:
        if name in _SUBCOMMANDS:
            raise ValueError(f"bench subcommand {name!r} is already registered")
        _SUBCOMMANDS[name] = (fn, add_args)
        return fn

    return wrap


def _machine() -> dict[str, Any]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_HERE, capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        sha = ""
    return {"cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(), "git_sha": sha,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _envs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="robosuite_lift", help="suite registry name")
    p.add_argument("--task", type=int, default=0, help="task id every env runs")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts")
    p.add_argument("--steps", type=int, default=100, help="vector steps timed per worker count")
    p.add_argument("--camera-size", type=int, default=128)
    p.add_argument("--no-render", action="store_true", help="time without camera rendering")


@subcommand("envs", _envs_args)
def bench_envs(args: argparse.Namespace) -> dict[str, Any]:
    """Env steps/s (all envs together) of a VectorEnv with random actions, per worker count.

    Start-up (process spawn, simulator build, reset and settle) is timed separately; steps/s
    counts ``steps * workers`` single-env steps over the stepping time only.
    """
    from avbr.envs import EpisodeSpec, SuiteConfig, VectorEnv  # noqa: PLC0415

    cfg = SuiteConfig(name=args.suite, camera_size=args.camera_size, render=not args.no_render,
                      max_steps=10**6)
    rng = np.random.default_rng(0)
    results = []
    for workers in args.workers:
        t0 = time.perf_counter()
        with VectorEnv(cfg, workers) as venv:
            ids = list(range(workers))
            out = venv.reset(ids, [EpisodeSpec(args.task, i, i) for i in ids])
            assert all(e is None for e in out.error), out.error
            t1 = time.perf_counter()
            for _ in range(args.steps):
                actions = rng.uniform(-0.3, 0.3, size=(workers, 7))
                out = venv.step(ids, actions)
                assert all(e is None for e in out.error), out.error
            t2 = time.perf_counter()
        rate = args.steps * workers / (t2 - t1)
        results.append({"workers": workers, "steps_per_s": round(rate, 2),
                        "startup_s": round(t1 - t0, 2), "timed_steps": args.steps * workers})
        print(f"workers={workers}: {rate:.1f} env steps/s (start-up {t1 - t0:.1f} s)", flush=True)
    base = results[0]["steps_per_s"]
    for r in results:
        r["speedup_vs_first"] = round(r["steps_per_s"] / base, 2)
    return {"benchmark": "envs", "suite": args.suite, "task": args.task,
            "camera_size": args.camera_size, "render": not args.no_render, "results": results,
            "machine": _machine()}


def _experts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suites", nargs="+", default=["robosuite_lift"])
    p.add_argument("--tasks", type=int, nargs="*", default=None, help="task ids (default: all)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--render", action="store_true", help="render cameras (slower)")


@subcommand("experts", _experts_args)
def bench_experts(args: argparse.Namespace) -> dict[str, Any]:
    """Scripted-expert success per task with the evaluation protocol (settle, max steps)."""
    from avbr.envs import SuiteConfig, list_tasks, run_expert_episodes  # noqa: PLC0415
    from avbr.envs.experts import ExpertUnavailable  # noqa: PLC0415

    suites: dict[str, Any] = {}
    for suite in args.suites:
        cfg = SuiteConfig(name=suite, render=args.render)
        tasks = list_tasks(cfg)
        ids = args.tasks if args.tasks else [t.task_id for t in tasks]
        t0 = time.perf_counter()
        done: dict[int, int] = {}

        def progress(record: Any) -> None:
            done[record.task_id] = done.get(record.task_id, 0) + 1
            if done[record.task_id] == args.episodes:
                print(f"  {suite} task {record.task_id}: all {args.episodes} episodes done", flush=True)

        records = run_expert_episodes(cfg, ids, args.episodes, args.workers, on_episode=progress)
        per_task = []
        for task in tasks:
            recs = [r for r in records if r.task_id == task.task_id]
            if not recs:
                continue
            unsupported = all(r.error and ExpertUnavailable.__name__ in r.error for r in recs)
            errors = sorted({r.error.strip().splitlines()[-1] for r in recs if r.error})
            successes = sum(r.success for r in recs)
            per_task.append({"task_id": task.task_id, "name": task.name, "language": task.language,
                             "episodes": len(recs), "successes": successes,
                             "success_rate": round(successes / len(recs), 3),
                             "mean_length": round(float(np.mean([r.length for r in recs])), 1),
                             "supported": not unsupported, "errors": errors})
            print(f"{suite} task {task.task_id} ({task.name}): {successes}/{len(recs)}"
                  + (" [no expert]" if unsupported else ""), flush=True)
        supported = [t for t in per_task if t["supported"]]
        suites[suite] = {"tasks": per_task, "seconds": round(time.perf_counter() - t0, 1),
                         "supported_tasks": len(supported),
                         "mean_success_supported": round(float(np.mean(
                             [t["success_rate"] for t in supported])), 3) if supported else None}
    return {"benchmark": "experts", "episodes_per_task": args.episodes, "render": args.render,
            "suites": suites, "machine": _machine()}


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="robosuite_lift", help="suite registry name")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="worker counts")
    p.add_argument("--episodes-per-worker", type=int, default=2, help="episodes timed per worker")
    p.add_argument("--max-steps", type=int, default=60, help="policy steps per episode")
    p.add_argument("--camera-size", type=int, default=128)
    p.add_argument("--encoder", default="timm_vit", help="avbr.adapters registry name (random init)")
    p.add_argument("--encoder-arch", default="", help="encoder.arch (default: the entry's)")
    p.add_argument("--img-size", type=int, default=None, help="encoder input size (default: native)")
    p.add_argument("--readout", default="cls")
    p.add_argument("--cameras", nargs="+", default=["agentview"])
    p.add_argument("--n-action-steps", type=int, default=4, help="actions executed per encoded frame")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads of the main process (more than free cores makes batch-1 encoding crawl)")


@subcommand("eval", _eval_args)
def bench_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluation rollouts (encoder + bc_mlp head): episodes/hour and time by stage, per worker count."""
    import torch  # noqa: PLC0415

    from avbr.adapters import EncoderConfig, build_encoder  # noqa: PLC0415
    from avbr.envs import SuiteConfig  # noqa: PLC0415
    from avbr.eval.policies import PolicyConfig  # noqa: PLC0415
    from avbr.eval.policy_data import FeatureSpec  # noqa: PLC0415
    from avbr.eval.throughput import bench_eval as run  # noqa: PLC0415

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(name=args.encoder, arch=args.encoder_arch, img_size=args.img_size,
                                          device="cpu"))
    suite = SuiteConfig(name=args.suite, camera_size=args.camera_size, max_steps=args.max_steps)
    policy = PolicyConfig(chunk_size=max(8, args.n_action_steps), n_action_steps=args.n_action_steps)
    spec = FeatureSpec(readout=args.readout, cameras=tuple(args.cameras))
    out = run(suite, encoder, spec, policy, args.workers, args.episodes_per_worker)
    return {"benchmark": "eval", "suite": args.suite, "encoder": args.encoder, "encoder_arch": args.encoder_arch,
            "img_size": args.img_size, "camera_size": args.camera_size, "readout": args.readout,
            "cameras": args.cameras, "n_action_steps": args.n_action_steps, "torch_threads": args.torch_threads,
            **out, "machine": _machine()}


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", default=["two_stream_small", "two_stream_base"],
                   help="<encoder>_<preset> future-prediction models, e.g. two_stream_base single_stream_small")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--depth", type=int, default=None, help="blocks per stream (default: the preset's 12)")
    p.add_argument("--batch", type=int, default=64, help="samples per step")
    p.add_argument("--steps", type=int, default=30, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (compilation)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step's model")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and inputs")
    p.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s (default: GPU-name table)")


@subcommand("pretrain", _pretrain_args)
def bench_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Training samples/s and MFU of future-prediction models and of a FLOP-matched timm ViT.

    Each model runs ``avbr.train``'s training step (bf16 autocast, fused AdamW, clipping, pinned
    uint8 batches copied non-blocking) on synthetic frame pairs, so data decoding is not timed.
    The reference is a plain timm ViT (random init, patch regression) with the model's stream
    width and heads and the depth whose FLOPs per sample (forward + backward, counted with
    ``FlopCounterMode``) are closest to the model's; both counts are reported.
    """
    import torch  # noqa: PLC0415

    from avbr.models import ENCODER_NAMES  # noqa: PLC0415
    from avbr.models.vit import resolve_preset  # noqa: PLC0415
    from avbr.objectives import build_objective  # noqa: PLC0415
    from avbr.objectives.vit_reference import ViTReference  # noqa: PLC0415
    from avbr.train import make_autocast, measure_flops_per_sample, peak_flops_for, time_training  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = peak_flops_for(device, args.peak_flops)
    autocast = make_autocast(args.precision, device)
    gen = torch.Generator().manual_seed(0)
    size = args.img_size

    def pairs(n: int) -> dict[str, Any]:
        frames = torch.randint(0, 256, (2, n, size, size, 3), dtype=torch.uint8, generator=gen)
        return {"prev": frames[0], "curr": frames[1], "gap": torch.randint(1, 11, (n,), generator=gen),
                "is_still": torch.zeros(n, dtype=torch.bool)}

    host, probe = [pairs(args.batch) for _ in range(2)], pairs(2)
    timing = dict(device=device, precision=args.precision, steps=args.steps, warmup=args.warmup,
                  compile=args.compile, channels_last=args.channels_last)

    def flops(module: torch.nn.Module) -> float:
        return measure_flops_per_sample(module.to(device), probe, device, autocast)

    def mfu(f: float, sps: float) -> float | None:
        return round(f * sps / peak, 4) if peak else None

    results = []
    for name in args.models:
        encoder, _, preset = name.rpartition("_")
        if encoder not in ENCODER_NAMES:
            raise SystemExit(f"--models {name}: expected <encoder>_<preset>, encoder one of {ENCODER_NAMES}")
        vit = resolve_preset(preset, args.depth)
        torch.manual_seed(0)
        model = build_objective("future_prediction", encoder=encoder, encoder_kwargs={
            "preset": preset, "img_size": size, "patch_size": args.patch_size, "depth": args.depth})
        f_model = flops(model)
        ref_kw = dict(img_size=size, patch_size=args.patch_size, embed_dim=vit.embed_dim, num_heads=vit.num_heads)
        f1, f2 = flops(ViTReference(depth=1, **ref_kw)), flops(ViTReference(depth=2, **ref_kw))
        ref_depth = max(1, round((f_model - (2 * f1 - f2)) / (f2 - f1)))  # flops(d) = (2 f1 - f2) + d (f2 - f1)
        reference = ViTReference(depth=ref_depth, **ref_kw)
        f_ref = flops(reference)
        n_params = sum(p.numel() for p in model.parameters())
        t_model = time_training(model, host, **timing)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        t_ref = time_training(reference, host, **timing)
        row = {
            "model": name, "params": n_params, "flops_per_sample": f_model,
            "samples_per_s": round(t_model["samples_per_s"], 2), "step_ms": round(t_model["step_ms"], 2),
            "mfu": mfu(f_model, t_model["samples_per_s"]),
            "reference": {"name": f"timm_vit_d{vit.embed_dim}_depth{ref_depth}", "depth": ref_depth,
                          "embed_dim": vit.embed_dim, "params": sum(p.numel() for p in reference.parameters()),
                          "flops_per_sample": f_ref, "samples_per_s": round(t_ref["samples_per_s"], 2),
                          "step_ms": round(t_ref["step_ms"], 2), "mfu": mfu(f_ref, t_ref["samples_per_s"])},
            "flops_ratio_model_over_reference": round(f_model / f_ref, 4),
            "speed_ratio_model_over_reference": round(t_model["samples_per_s"] / t_ref["samples_per_s"], 4),
        }
        results.append(row)
        print(f"{name}: {row['samples_per_s']} samples/s, MFU {row['mfu']} | {row['reference']['name']}: "
              f"{row['reference']['samples_per_s']} samples/s, MFU {row['reference']['mfu']}", flush=True)
        del reference
    return {"benchmark": "pretrain", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": args.precision, "img_size": size, "patch_size": args.patch_size, "depth": args.depth,
            "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "compile": args.compile,
            "channels_last": args.channels_last, "peak_flops": peak, "torch": torch.__version__,
            "results": results, "machine": _machine()}


# Default line-up of the ``encoders`` subcommand: (label, registry name, arch), all random init at
# the encoder's native resolution. "timm_vit_s16"/"timm_vit_b16" are the plain-ViT references.
_ENCODER_LINEUP = [
    ("two_stream_small", "two_stream", "small"), ("two_stream_base", "two_stream", "base"),
    ("timm_vit_s16", "timm_vit", "small"), ("timm_vit_b16", "timm_vit", "base"),
    ("dinov2_s14", "dinov2_timm", "small"), ("dinov2_b14", "dinov2_timm", "base"),
    ("clip_b16", "clip", "b16"), ("siglip_b16", "siglip", "b16"), ("r3m_rn50", "r3m", "resnet50"),
    ("videomae_base", "videomae", "base"),
]


def _encoders_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=256, help="frames (pairs) per forward")
    p.add_argument("--iters", type=int, default=20, help="timed forwards per encoder")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards before timing")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="bf16 = bfloat16 autocast")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--only", nargs="*", default=None, metavar="LABEL",
                   help=f"subset of the line-up: {' '.join(label for label, _, _ in _ENCODER_LINEUP)}")


@subcommand("encoders", _encoders_args)
def bench_encoders(args: argparse.Namespace) -> dict[str, Any]:
    """Feature-extraction images/s of every encoder adapter (random init, native resolution).

    Each step is one ``adapter.encode(prev, curr)`` of a batch of uint8 ``[B, H, W, 3]`` frames
    already on the device at the encoder's input size, so it times normalisation + forward, not
    decoding or resizing. For two-frame encoders (ours, VideoMAE) an "image" is one (prev, curr)
    pair; VideoMAE encodes it as its 16-frame clip. ``ratio_two_stream_small_over_timm_vit_s16``
    compares two rows of the same run.
    """
    import torch  # noqa: PLC0415

    from avbr.adapters import EncoderConfig, build_encoder  # noqa: PLC0415

    lineup = [row for row in _ENCODER_LINEUP if args.only is None or row[0] in args.only]
    if args.only and len(lineup) != len(args.only):
        raise SystemExit(f"--only: unknown label(s) {sorted(set(args.only) - {r[0] for r in lineup})}")
    results = []
    for label, name, arch in lineup:
        torch.manual_seed(0)
        enc = build_encoder(EncoderConfig(name=name, arch=arch, device=args.device,
                                          autocast_bf16=args.precision == "bf16"))
        dev = enc.device
        h, w = enc.contract.resolution
        frames = torch.randint(0, 256, (2, args.batch, h, w, 3), dtype=torch.uint8, device=dev)

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        with torch.inference_mode():
            for _ in range(args.warmup):
                enc.encode(frames[0], frames[1])
            sync()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                feats = enc.encode(frames[0], frames[1])
            sync()
            seconds = time.perf_counter() - t0
        rate = args.batch * args.iters / seconds
        results.append({"label": label, "encoder": name, "arch": arch, "img_size": h,
                        "frames_needed": enc.contract.frames_needed, "feature_dim": int(feats.cls.shape[-1]),
                        "tokens": int(feats.patches.shape[1]),
                        "params": sum(p.numel() for p in enc.parameters()),
                        "images_per_s": round(rate, 2), "ms_per_batch": round(1000 * seconds / args.iters, 2)})
        print(f"{label}: {rate:.1f} images/s", flush=True)
        del enc, frames, feats
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    by_label = {r["label"]: r["images_per_s"] for r in results}
    ratio = (round(by_label["two_stream_small"] / by_label["timm_vit_s16"], 4)
             if {"two_stream_small", "timm_vit_s16"} <= by_label.keys() else None)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    return {"benchmark": "encoders", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": args.precision, "batch": args.batch, "iters": args.iters, "warmup": args.warmup,
            "torch": torch.__version__, "results": results,
            "ratio_two_stream_small_over_timm_vit_s16": ratio, "machine": _machine()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run the chosen subcommand, print and optionally write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
