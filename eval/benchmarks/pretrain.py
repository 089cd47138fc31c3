"""``bench pretrain``: training samples/s and MFU against a FLOP-matched timm ViT."""

from __future__ import annotations

import argparse
from typing import Any


from avbr.eval.benchmarks.registry import machine, subcommand


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
            "preset": preset, "img_size": size, "patch_size": args.patch_size, "depth": args.depth},
            params={"target": "seed"})  # the host batches are pairs; the step's cost does not depend on the target
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
            "results": results, "machine": machine()}
