"""``bench encoders``: feature-extraction images/s of every encoder adapter."""

from __future__ import annotations

import argparse
import time
from typing import Any


from avbr.eval.benchmarks.registry import machine, subcommand


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
            "ratio_two_stream_small_over_timm_vit_s16": ratio, "machine": machine()}
