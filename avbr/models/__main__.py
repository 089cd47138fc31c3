"""``python -m avbr.models --summary``: parameters and forward GFLOPs of every model and preset.

GFLOPs count one multiply-add as 2 FLOPs (``torch.utils.flop_counter``), for one frame pair at
``--img-size``, measured on the meta device (no memory, no weights).
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from avbr.models.registry import ENCODER_NAMES, build_model
from avbr.models.vit import PRESETS


def count(name: str, preset: str, img_size: int) -> tuple[float, float]:
    """``(parameters in millions, forward GFLOPs per sample)`` of model ``name`` at ``preset``."""
    with torch.device("meta"):
        if name == "video_predictor":
            model = build_model(name, encoder_kwargs=dict(preset=preset, img_size=img_size))
        else:
            model = build_model(name, preset=preset, img_size=img_size)
        frames = torch.rand(1, 3, img_size, img_size), torch.rand(1, 3, img_size, img_size)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*frames)
    return params, counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", action="store_true", help="print the parameter/GFLOP table (markdown)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    if not args.summary:
        parser.print_help()
        return
    print(f"| model | preset | params (M) | GFLOPs @ {args.img_size} |")
    print("|---|---|---:|---:|")
    for name in (*ENCODER_NAMES, "video_predictor"):
        for preset in args.presets:
            params, gflops = count(name, preset, args.img_size)
            print(f"| {name} | {preset} | {params:.1f} | {gflops:.1f} |")


if __name__ == "__main__":
    main()
