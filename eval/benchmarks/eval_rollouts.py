"""``bench eval``: evaluation rollouts (encoder + bc_mlp head), episodes/hour and time by stage."""

from __future__ import annotations

import argparse
from typing import Any


from avbr.eval.benchmarks.registry import machine, subcommand


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
    p.add_argument("--device", default="cpu", help="encoder/policy device: cpu | cuda | auto (GPU when present)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the encoder forward")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads of the main process (more than free cores makes batch-1 encoding crawl)")


@subcommand("eval", _eval_args)
def bench_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluation rollouts (encoder + bc_mlp head): episodes/hour and time by stage, per worker count."""
    import torch  # noqa: PLC0415

    from avbr.adapters import EncoderConfig, build_encoder  # noqa: PLC0415
    from avbr.envs import SuiteConfig  # noqa: PLC0415
    from avbr.eval.rollouts.policies import PolicyConfig  # noqa: PLC0415
    from avbr.eval.rollouts.policy_data import FeatureSpec  # noqa: PLC0415
    from avbr.eval.benchmarks.eval_throughput import bench_eval as run  # noqa: PLC0415

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(name=args.encoder, arch=args.encoder_arch, img_size=args.img_size,
                                          device=args.device, autocast_bf16=args.bf16))
    suite = SuiteConfig(name=args.suite, camera_size=args.camera_size, max_steps=args.max_steps)
    policy = PolicyConfig(chunk_size=max(8, args.n_action_steps), n_action_steps=args.n_action_steps)
    spec = FeatureSpec(readout=args.readout, cameras=tuple(args.cameras))
    out = run(suite, encoder, spec, policy, args.workers, args.episodes_per_worker)
    return {"benchmark": "eval", "suite": args.suite, "encoder": args.encoder, "encoder_arch": args.encoder_arch,
            "img_size": args.img_size, "camera_size": args.camera_size, "readout": args.readout,
            "cameras": args.cameras, "n_action_steps": args.n_action_steps, "torch_threads": args.torch_threads,
            "device": str(encoder.device), "bf16": args.bf16,
            **out, "machine": machine()}
