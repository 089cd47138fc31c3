"""LoRA fine-tuning of a VLA adapter on LIBERO-layout demos (Hydra app).

    python -m avbr.adapters.vla.finetune vla=pi0_small data.paths=[/data/libero_spatial] steps=300
    python -m avbr.adapters.vla.finetune vla=openvla_tiny data.synthetic=true steps=5 device=cpu

Reads top to bottom: config -> seed -> data (+ normalisation statistics) -> tokenizer -> policy
(optionally initialised from a released checkpoint) -> LoRA -> AdamW -> loop (LR schedule, clip,
step, log loss and samples/s) -> ``metrics.json`` + ``config.yaml`` + the merged policy
(:func:`~avbr.adapters.vla.factory.save_finetuned`) in ``out_dir``.

``data.synthetic=true`` writes scripted 2-D reaching demos (:func:`~avbr.adapters.vla.data.write_synthetic_demos`)
into ``data.synthetic_dir`` (default ``out_dir/synthetic_demos``) and trains on them; the run is marked ``"synthetic_data": true``
in ``metrics.json`` and in every log line. It exists for machines without LIBERO; it is not LIBERO.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from avbr.cli import ConfigError, entry_point
from avbr.provenance import code_provenance, describe_commit, provenance
from avbr.schedule import lr_at

from .data import LiberoDemoDataset, collate, write_synthetic_demos
from .factory import VLAS, LoraSettings, apply_lora, build_policy, load_released, make_config, save_finetuned
from .tokenizer import load_tokenizer

log = logging.getLogger("avbr.vla.finetune")


@dataclass
class DataSettings:
    """Where the demos come from.

    Attributes:
        paths: LIBERO-layout ``.hdf5`` files or folders of them (searched recursively).
        synthetic: train on freshly written synthetic demos instead (labelled as such).
        synthetic_dir: where synthetic demos are written (default ``out_dir/synthetic_demos``).
        synthetic_demos: demos per synthetic task (2 tasks).
        synthetic_length: steps per synthetic demo.
        synthetic_size: synthetic frame side in pixels.
        camera: ``agentview`` / ``wrist`` or an image dataset under ``obs/``.
        state_keys: ``obs/`` keys concatenated into the state (LIBERO: 6 + 2 dims).
        flip_images: the image convention; set it to the evaluation's ``suite.flip_images``
            (:func:`avbr.envs.observations.policy_frames`).
        drop_noops: drop OpenVLA's no-op steps (:mod:`avbr.envs.demos`).
        num_workers: DataLoader workers.
    """

    paths: list[str] = field(default_factory=list)
    synthetic: bool = False
    synthetic_dir: str | None = None
    synthetic_demos: int = 10
    synthetic_length: int = 40
    synthetic_size: int = 64
    camera: str = "agentview_rgb"
    state_keys: list[str] = field(default_factory=lambda: ["ee_states", "gripper_states"])
    flip_images: bool = True
    drop_noops: bool = True
    num_workers: int = 2


@dataclass
class FinetuneSettings:
    """The whole run. ``vla`` is a group (``configs/vla/vla/*.yaml``): ``name`` plus that VLA's config fields.

    Attributes:
        vla: ``{"name": "pi0" | "openvla", **config fields}``.
        data: :class:`DataSettings`.
        lora: :class:`~avbr.adapters.vla.factory.LoraSettings`.
        tokenizer: ``tiny`` (built from the demo instructions) or a local tokenizer directory.
        tokenizer_vocab_size: base vocabulary of the ``tiny`` tokenizer.
        init_checkpoint: released checkpoint (lerobot Pi0 ``model.safetensors`` / openvla-7b shard
            directory) loaded through the VLA's key mapping; ``None`` = random init.
        steps: optimiser steps.
        batch_size: samples per step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up, then cosine decay to 10 % of ``lr``.
        grad_clip: max gradient norm (0 = off).
        precision: ``fp32`` or ``bf16`` (autocast on CUDA).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``...
        seed: random seed.
        log_every: log every this many steps (every step is recorded in metrics.json).
        throughput_skip: first steps left out of the samples/s average (warm-up, allocation).
        save: write the merged fine-tuned policy to ``out_dir/policy``.
        out_dir: output folder.
    """

    vla: dict[str, Any] = field(default_factory=lambda: {"name": "pi0"})
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    tokenizer: str = "tiny"
    tokenizer_vocab_size: int = 512
    init_checkpoint: str | None = None
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    grad_clip: float = 1.0
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    throughput_skip: int = 5
    save: bool = True
    out_dir: str = "runs/vla"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")


def demo_files(s: DataSettings, out_dir: Path) -> tuple[list[Path], bool]:
    """The demo files to read and whether they are synthetic."""
    if s.synthetic:
        if s.paths:
            raise ConfigError("data.synthetic=true and data.paths are exclusive; drop one of them")
        where = Path(s.synthetic_dir) if s.synthetic_dir else out_dir / "synthetic_demos"
        files = write_synthetic_demos(where, s.synthetic_demos, s.synthetic_length, s.synthetic_size)
        return files, True
    if not s.paths:
        raise ConfigError("no demos: pass data.paths=[file.hdf5 | folder, ...] (LIBERO layout), or "
                         "data.synthetic=true for a clearly labelled synthetic smoke run")
    files: list[Path] = []
    for p in map(Path, s.paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix in (".hdf5", ".h5"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"data path {p} does not exist")
    if not files:
        raise FileNotFoundError(f"no .hdf5 files under {s.paths}")
    return files, False


def run(s: FinetuneSettings) -> dict[str, Any]:
    """Fine-tune and return the metrics written to ``out_dir/metrics.json``."""
    out_dir = Path(s.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    device = torch.device(s.device if s.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    vla = dict(s.vla)
    name = vla.pop("name")
    cfg = make_config(name, vla)
    files, synthetic = demo_files(s.data, out_dir)
    tag = "[SYNTHETIC DATA] " if synthetic else ""

    entry = VLAS.get(name)
    ds = LiberoDemoDataset(files, entry.train_chunk(cfg), cfg.frame_gap, s.data.camera, tuple(s.data.state_keys),
                           s.data.flip_images, s.data.drop_noops)
    # the tiny tokenizer's vocabulary: the instructions and, for OpenVLA, the prompt template
    prompts = [getattr(cfg, "prompt_template", ""), *sorted(set(ds.instructions))]
    tokenizer = load_tokenizer(s.tokenizer, prompts, s.tokenizer_vocab_size)
    norms = entry.fit_normalizers(cfg, ds.all_actions(), ds.all_states())
    policy = build_policy(name, cfg, tokenizer, norms)
    kept_init = load_released(name, policy, s.init_checkpoint) if s.init_checkpoint else None
    if s.lora.enabled:
        apply_lora(policy, s.lora)
    policy.to(device).train()
    params = [p for p in policy.parameters() if p.requires_grad]
    n_train, n_all = sum(p.numel() for p in params), sum(p.numel() for p in policy.parameters())
    log.info("%s%s: %d demo steps from %d files (%s); %.2fM / %.2fM parameters trainable; device %s",
             tag, name, len(ds), len(files), ", ".join(sorted(set(ds.instructions))), n_train / 1e6, n_all / 1e6, device)
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    loader = DataLoader(ds, batch_size=s.batch_size, shuffle=True, drop_last=len(ds) >= s.batch_size,
                        num_workers=s.data.num_workers, collate_fn=collate, persistent_workers=s.data.num_workers > 0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.precision == "bf16")
    losses, step_times = [], []
    batches = iter(loader)
    wall0 = time.perf_counter()
    for step in range(s.steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        lr = lr_at(step, lr=s.lr, min_lr=0.1 * s.lr, warmup_steps=s.warmup_steps, total_steps=s.steps)
        for group in opt.param_groups:
            group["lr"] = lr
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            loss = policy.compute_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; lower lr or use precision=fp32")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(float(loss.item()))
        step_times.append(dt)
        if step % s.log_every == 0 or step == s.steps - 1:
            log.info("%sstep %d/%d loss %.4f lr %.2e %.1f samples/s", tag, step + 1, s.steps, losses[-1],
                     lr, len(batch["instruction"]) / dt)
    wall = time.perf_counter() - wall0
    timed = step_times[s.throughput_skip:] or step_times
    k = max(1, len(losses) // 10)
    metrics = {
        "vla": name,
        "synthetic_data": synthetic,
        "data_files": [str(f) for f in files],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "steps": s.steps,
        "batch_size": s.batch_size,
        "loss": losses,
        "loss_first_10pct_mean": sum(losses[:k]) / k,
        "loss_last_10pct_mean": sum(losses[-k:]) / k,
        "samples_per_s": s.batch_size * len(timed) / sum(timed),  # training step only, after warm-up
        "samples_per_s_wall": s.batch_size * s.steps / wall,  # whole loop, data loading included
        "step_time_s_mean": sum(timed) / len(timed),
        "params_trainable": n_train,
        "params_total": n_all,
        "init_checkpoint": s.init_checkpoint,
        "init_kept_keys": len(kept_init) if kept_init is not None else None,
        "provenance": provenance(),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if s.save:
        save_finetuned(policy, name, out_dir / "policy", extra={"synthetic_data": synthetic})
    log.info("%sloss %.4f -> %.4f (first/last 10%% of steps), %.1f samples/s; wrote %s", tag,
             metrics["loss_first_10pct_mean"], metrics["loss_last_10pct_mean"], metrics["samples_per_s"], out_dir / "metrics.json")
    return metrics


# The schema is the base of configs/vla/finetune.yaml, so unknown keys and bad types fail at parse time.
ConfigStore.instance().store(name="finetune_schema", node=FinetuneSettings)


@entry_point
@hydra.main(version_base=None, config_path="../../configs/vla", config_name="finetune")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: validate against :class:`FinetuneSettings`, log, save config, run."""
    settings: FinetuneSettings = OmegaConf.to_object(cfg)
    out_dir = Path(settings.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    log.info("config:\n%s\ncode: %s", OmegaConf.to_yaml(cfg, resolve=True), describe_commit(code_provenance()))
    run(settings)


if __name__ == "__main__":
    main()
