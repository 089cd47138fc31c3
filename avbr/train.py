"""Pretraining: ``python -m avbr.train`` (Hydra app, configs in ``configs/pretrain/``).

Reads top to bottom like nanoGPT's ``train.py``: config schema -> distributed setup and precision
-> data -> model (scratch or resume) -> optimiser -> FLOPs and compile -> loop (lr, step, clip,
log, checkpoint) -> encoder export and the run record.

Launch::

    python -m avbr.train                                   # smoke run on procedural videos (CPU ok)
    torchrun --nproc_per_node 8 -m avbr.train +experiment=seed001_two_stream data.sources.egodex.root=/data/egodex
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint $HEAD:29500 -m avbr.train ...

DDP uses ``env://`` (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``), NCCL on
GPUs and gloo on CPU. Re-running with the same ``train.output_dir`` resumes from its latest
checkpoint exactly (weights, optimiser, step, data position, RNG of every rank).

Output folder (``train.output_dir``)::

    config.yaml                      resolved config
    run.json                         versioned run record: config, seeds, versions, git commit,
                                     FLOPs, final results (rewritten at the end)
    checkpoints/step_XXXXXXX/        objective.safetensors (full objective: model, decoder, teacher)
                                     trainer.pt (optimiser, step, RNG of every rank, data position)
                                     config.yaml, encoder/ (encoder-only export)
    checkpoints/latest               name of the newest complete checkpoint
    encoder/                         final encoder-only export (what adapters load)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import hydra
import numpy as np
import torch
import torch.distributed as dist
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count
from tqdm import tqdm

from avbr.data import SOURCES, GapSchedule, PairMixture, StreamSampler, collate_pairs
from avbr.objectives import Objective, build_objective, frames_to_float

log = logging.getLogger("avbr.train")

RUN_FORMAT_VERSION = 1
CHECKPOINT_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Config schema (the YAML files in configs/pretrain/ list only what they change)
# ---------------------------------------------------------------------------------------------
@dataclass
class GapConfig:
    """Gap sampling and weighting (``avbr.data.gaps``); seed 001: 10 / 0.8 / 0.5.

    Attributes:
        max_gap: largest gap ``K`` in frames.
        sample_decay: ``P(k) ~ sample_decay^(k-1)``.
        loss_decay: ``w(k) ~ loss_decay^(k-1)``, normalised so that ``E_P[w] = 1``.
        still_weight: loss weight of still images.
    """

    max_gap: int = 10
    sample_decay: float = 0.8
    loss_decay: float = 0.5
    still_weight: float = 1.0


@dataclass
class SourceConfig:
    """One data source of the mixture.

    Attributes:
        name: registry name (``avbr.data.SOURCES``: hdf5_demos, bridge, egodex, video_folder,
            image_folder, procedural, procedural_stills).
        root: data folder (unused by the procedural sources).
        weight: relative weight within its group (videos or stills).
        kwargs: extra constructor arguments of the source class (e.g. ``camera``, ``frame_stride``).
    """

    name: str = MISSING
    root: str = ""
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """The mixture.

    Attributes:
        sources: ``{alias: SourceConfig}``; override a root with ``data.sources.<alias>.root=...``.
        still_ratio: fraction of still-image samples (seed 002: 0.3).
        num_workers: DataLoader workers per rank (frames are decoded in the workers).
        prefetch_factor: batches prefetched per worker.
    """

    sources: dict[str, SourceConfig] = field(default_factory=dict)
    still_ratio: float = 0.3
    num_workers: int = 4
    prefetch_factor: int = 4


@dataclass
class ModelConfig:
    """The model of the objective (``avbr.models``).

    Attributes:
        encoder: encoder registry name: two_stream | single_stream | early_fusion | m_only | p_only.
        encoder_kwargs: encoder config fields (preset, img_size, patch_size, depth, mode, cls_fusion...).
        decoder_kwargs: decoder config fields (future prediction) or VideoMAE decoder fields.
    """

    encoder: str = "two_stream"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """Attributes:
    name: future_prediction | videomae | dino_temporal.
    params: the objective's own options (its ``Config`` dataclass fields).
    """

    name: str = "future_prediction"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay; the lr is a pure function of the step.

    Attributes:
        lr: peak learning rate (after warmup).
        min_lr: final learning rate of the cosine.
        warmup_steps: linear warmup length in optimiser steps.
        weight_decay: decoupled weight decay of matrices (biases, norms, embeddings and tokens: 0).
        beta1, beta2: Adam betas.
        grad_clip: max global gradient norm (0 disables clipping).
    """

    lr: float = 1.5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 1000
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    """Loop settings.

    Attributes:
        batch_size: samples per rank per step (global batch = batch_size x world size).
        total_steps: optimiser steps of the whole run (the cosine ends here).
        max_steps_this_run: stop (with a checkpoint) after this many steps of this process; null = run to the end.
        ckpt_every: checkpoint every N steps (and at the end).
        keep_last: complete checkpoints kept (older ones are deleted).
        log_every: log metrics, samples/s and MFU every N steps (the only host syncs).
        precision: auto (bf16 autocast on GPU, fp32 on CPU) | bf16 | fp32.
        compile: wrap the objective in torch.compile.
        channels_last: NHWC memory format for the model and inputs (helps the decoder's convs).
        seed: seed of the weights, the data stream and the objective's draws.
        output_dir: run folder; re-running with the same folder resumes.
        resume: auto (resume when output_dir has a checkpoint) | never | <path of a run or checkpoint>.
        peak_flops: peak FLOP/s of one device for MFU; null = from the GPU-name table (CPU: no MFU).
        ddp_find_unused: DDP searches unused parameters every step instead of assuming a static graph
            (only for objectives whose graph changes between steps).
    """

    batch_size: int = 32
    total_steps: int = 100_000
    max_steps_this_run: Optional[int] = None
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 20
    precision: str = "auto"
    compile: bool = False
    channels_last: bool = False
    seed: int = 0
    output_dir: str = MISSING
    resume: str = "auto"
    peak_flops: Optional[float] = None
    ddp_find_unused: bool = False


@dataclass
class WandbConfig:
    """Attributes:
    mode: offline (default: nothing leaves the machine; ``wandb sync`` later) | online | disabled.
    project, entity, name: W&B run coordinates (name defaults to the output folder's name).
    """

    mode: str = "offline"
    project: str = "avbr-pretrain"
    entity: Optional[str] = None
    name: Optional[str] = None


@dataclass
class PretrainConfig:
    gap: GapConfig = field(default_factory=GapConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if self.train.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {self.train.precision!r}")
        if self.wandb.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb.mode must be offline | online | disabled, got {self.wandb.mode!r}")
        if self.optim.warmup_steps >= self.train.total_steps > 0 and self.optim.warmup_steps > 0:
            raise ValueError(
                f"optim.warmup_steps ({self.optim.warmup_steps}) must be < train.total_steps ({self.train.total_steps})"
            )


ConfigStore.instance().store(name="pretrain_schema", node=PretrainConfig)

PRECISIONS = ("auto", "bf16", "fp32")

# Dense bf16 tensor-core peaks (FLOP/s) by GPU name, most specific first (NVIDIA datasheets).
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
]


# ---------------------------------------------------------------------------------------------
# Pure functions: lr schedule, peak FLOPs, FLOPs per sample
# ---------------------------------------------------------------------------------------------
def lr_at(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warmup, then cosine to ``min_lr``."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))
    return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * progress))


def peak_flops_for(device: torch.device, override: float | None = None) -> float | None:
    """Peak bf16 FLOP/s of ``device``: ``override``, else the table entry matching the GPU name."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def _register_cpu_sdpa_flops() -> None:
    """Count CPU flash attention, which torch's FLOP counter leaves out (GPU kernels are counted)."""
    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd.default in flop_registry:  # registered already (this module imported twice)
        return

    @register_flop_formula(fwd)
    def _fwd(query_shape, key_shape, value_shape, *args, **kwargs) -> int:  # noqa: ANN001
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    @register_flop_formula(bwd)
    def _bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:  # noqa: ANN001
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_sdpa_flops()


def measure_flops_per_sample(
    objective: nn.Module, batch: dict[str, torch.Tensor], device: torch.device, autocast: Callable[[], Any]
) -> float:
    """FLOPs of one training step (forward + backward) per sample, counted with ``FlopCounterMode``.

    Runs on the eager ``objective`` and discards the gradients; the objective's own draws use a
    throwaway generator. Note that objectives with side effects in ``forward`` (DINO's centre)
    see one extra update, so call this on a copy when that matters.
    """
    prev, curr, gap, still, future = to_device(batch, device)
    gen = torch.Generator(device=device).manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        with autocast():
            out = objective(prev, curr, gap, still, gen, future)
        out["loss"].backward()
    objective.zero_grad(set_to_none=True)
    return counter.get_total_flops() / prev.shape[0]


# ---------------------------------------------------------------------------------------------
# Distributed setup, data, optimiser, the step
# ---------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Init the process group from torchrun's ``env://`` variables (NCCL on GPU, gloo on CPU)."""
    if "RANK" not in os.environ:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return Dist(0, 0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://", device_id=device if backend == "nccl" else None)
    return Dist(dist.get_rank(), local_rank, dist.get_world_size(), device)


def make_autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    """A zero-argument context factory: bf16 autocast or a no-op."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return lambda: torch.autocast(device_type=device.type, enabled=False)


def build_mixture(cfg: DataConfig, gap: GapSchedule, img_size: int, seed: int, frames: int = 2) -> PairMixture:
    """Build every configured source (listing files only) and the mixture of pairs (``frames=2``) or triples (3)."""
    if not cfg.sources:
        raise ValueError(f"data.sources is empty; add at least one of: {', '.join(SOURCES.names())}")
    sources, weights = [], []
    for alias, sc in cfg.sources.items():
        cls = SOURCES.get(sc.name)
        try:
            sources.append(cls(sc.root, gap=gap, **dict(sc.kwargs)))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"data.sources.{alias}: {e}") from e
        weights.append(sc.weight)
    return PairMixture(sources, weights, img_size=img_size, still_ratio=cfg.still_ratio, seed=seed, frames=frames)


def build_loader(mixture: PairMixture, cfg: DataConfig, batch_size: int, start: int, d: Dist) -> DataLoader:
    """DataLoader over the stream from global sample ``start`` (frames decoded in the workers)."""
    workers = cfg.num_workers
    return DataLoader(
        mixture,
        batch_size=batch_size,
        sampler=StreamSampler(start, d.rank, d.world_size),
        num_workers=workers,
        collate_fn=collate_pairs,
        pin_memory=d.device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
    )


def to_device(
    batch: dict[str, Any], device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """uint8 frames go to the device as uint8 (4x less traffic) and become floats there.

    Returns ``prev``, ``curr`` ``[B, 3, H, W]`` in ``[0, 1]``, ``gap [B]``, ``is_still [B]`` and
    ``future [B, 3, H, W]`` (triple batches; ``None`` for pairs).
    """
    nb = device.type == "cuda"
    prev = frames_to_float(batch["prev"].to(device, non_blocking=nb))  # [B, 3, H, W]
    curr = frames_to_float(batch["curr"].to(device, non_blocking=nb))
    future = frames_to_float(batch["future"].to(device, non_blocking=nb)) if "future" in batch else None
    if channels_last:
        prev, curr = prev.contiguous(memory_format=torch.channels_last), curr.contiguous(memory_format=torch.channels_last)
        future = None if future is None else future.contiguous(memory_format=torch.channels_last)
    return prev, curr, batch["gap"].to(device, non_blocking=nb), batch["is_still"].to(device, non_blocking=nb), future


_NO_DECAY_SUFFIXES = ("cls_token", "pos_embed", "mask_token", "position_embeddings", "center")


def build_optimizer(model: nn.Module, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (fused on GPU); weight decay on matrices and kernels only, not on biases, norms,
    CLS / mask tokens or position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(_NO_DECAY_SUFFIXES) else decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=optim.lr, betas=(optim.beta1, optim.beta2), fused=fused, foreach=None if fused else True
    )


def seed_generator(generator: torch.Generator, seed: int, step: int, rank: int) -> torch.Generator:
    """Reseed the objective's generator for one step: its draws are a pure function of
    ``(seed, step, rank)``. One generator object is reused so that ``torch.compile`` sees the
    same input every step."""
    return generator.manual_seed((seed * 1_000_003 + step) * 4099 + rank)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]],
    generator: torch.Generator,
    autocast: Callable[[], Any],
    grad_clip: float,
) -> dict[str, torch.Tensor]:
    """Forward, backward, clip, AdamW step. No host synchronisation: returns device tensors.

    Returns the objective's detached metrics plus ``grad_norm``.
    """
    prev, curr, gap, still, future = batch
    with autocast():
        out = model(prev, curr, gap, still, generator, future)
    out["loss"].backward()
    metrics = {k: v.detach() for k, v in out.items()}
    if grad_clip > 0:
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return metrics


def time_training(
    model: nn.Module,
    host_batches: list[dict[str, Any]],
    device: torch.device,
    precision: str = "auto",
    steps: int = 20,
    warmup: int = 5,
    compile: bool = False,
    channels_last: bool = False,
    optim: OptimConfig | None = None,
) -> dict[str, float]:
    """Samples/s of the training step of ``model`` (an objective-like module), for benchmarks.

    Runs exactly the loop's step (``to_device`` from pinned host batches with non-blocking copies,
    ``train_step`` with bf16 autocast, clipping and fused AdamW); ``warmup`` untimed steps first
    (compilation, allocator), then ``steps`` timed steps with one synchronisation at each end.

    Returns ``{"samples_per_s", "step_ms", "final_loss"}``.
    """
    optim = optim or OptimConfig(lr=1e-4, warmup_steps=0)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, optim, device)
    params = [p for p in model.parameters() if p.requires_grad]
    step_fn = torch.compile(model) if compile else model
    autocast = make_autocast(precision, device)
    if device.type == "cuda":
        host_batches = [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in host_batches]
    batch_size = host_batches[0]["prev"].shape[0]

    generator = torch.Generator(device=device)

    def one(i: int) -> dict[str, torch.Tensor]:
        tensors = to_device(host_batches[i % len(host_batches)], device, channels_last)
        return train_step(
            step_fn, optimizer, params, tensors, seed_generator(generator, 0, i, 0), autocast, optim.grad_clip
        )

    for i in range(warmup):
        one(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        metrics = one(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    return {"samples_per_s": steps * batch_size / dt, "step_ms": 1000 * dt / steps, "final_loss": float(metrics["loss"])}


# ---------------------------------------------------------------------------------------------
# Checkpoints and the run record
# ---------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng_states(d: Dist) -> list[dict[str, Any]]:
    """RNG states of every rank (rank order)."""
    if d.world_size == 1:
        return [rng_state()]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, rng_state())
    return out


def find_checkpoint(path: Path) -> Path | None:
    """The newest complete checkpoint under a run folder, a ``checkpoints/`` folder or a checkpoint itself."""
    if (path / "trainer.pt").is_file():
        return path
    for ckdir in (path / "checkpoints", path):
        latest = ckdir / "latest"
        if latest.is_file():
            ckpt = ckdir / latest.read_text().strip()
            if (ckpt / "trainer.pt").is_file():
                return ckpt
    return None


def save_checkpoint(
    out_dir: Path,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    step: int,
    trainer_extra: dict[str, Any],
    rng_states: list[dict[str, Any]],
    resolved_cfg: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``checkpoints/step_<step>/`` atomically (a temporary folder renamed), then ``latest``.

    ``step`` is the number of optimiser steps done. Weights are the unwrapped objective's
    (no DDP / compile prefixes), in safetensors.
    """
    ck_root = out_dir / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final, tmp = ck_root / name, ck_root / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in objective.state_dict().items()}
    save_file(state, str(tmp / "objective.safetensors"))
    torch.save(
        {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "step": step,
            "optimizer": optimizer.state_dict(),
            "rng": rng_states,
            **trainer_extra,
        },
        tmp / "trainer.pt",
    )
    (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved_cfg)))
    objective.export_encoder(tmp / "encoder", extra={"step": step})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = ck_root / f"latest.tmp{os.getpid()}"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, ck_root / "latest")
    done = sorted(p for p in ck_root.glob("step_*") if p.is_dir())
    for old in done[: max(0, len(done) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    import timm
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What ``run`` returns: the results written to ``run.json`` and the trained objective."""

    results: dict[str, Any]
    objective: Objective


def run(cfg: DictConfig) -> RunResult:
    """Train according to ``cfg`` (a ``PretrainConfig`` node)."""
    t_start = time.time()
    d = setup_distributed()
    schema: PretrainConfig = OmegaConf.to_object(cfg)  # validates fields and cross-field rules
    tc, oc = schema.train, schema.optim
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if not d.is_main:
        logging.getLogger().setLevel(logging.WARNING)

    # -- output folder: rank 0's choice wins (interpolations like ${now:} may differ per rank) -----
    out_dir = [str(Path(tc.output_dir).resolve())]
    if d.world_size > 1:
        dist.broadcast_object_list(out_dir, src=0)
    out_dir = Path(out_dir[0])
    resolved["train"]["output_dir"] = str(out_dir)
    if d.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))

    # -- precision ----------------------------------------------------------------------------
    if d.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = make_autocast(tc.precision, d.device)

    # -- model: identical init on every rank (seed), then maybe a checkpoint ----------------------
    torch.manual_seed(tc.seed)
    gap = GapSchedule(**dataclasses.asdict(schema.gap))
    objective = build_objective(
        schema.objective.name,
        encoder=schema.model.encoder,
        encoder_kwargs=schema.model.encoder_kwargs,
        decoder_kwargs=schema.model.decoder_kwargs,
        gap=gap,
        params=schema.objective.params,
    ).to(d.device)
    if tc.channels_last:
        objective = objective.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(objective, oc, d.device)

    ckpt = None
    if tc.resume != "never":
        where = out_dir if tc.resume == "auto" else Path(tc.resume).expanduser()
        ckpt = find_checkpoint(where)
        if ckpt is None and tc.resume != "auto":
            raise FileNotFoundError(
                f"train.resume={tc.resume}: no checkpoint found (looked for {where}/trainer.pt, "
                f"{where}/checkpoints/latest and {where}/latest); pass a run folder or a step_* folder"
            )
    start_step, samples_seen, skipped_total = 0, 0, 0
    if ckpt is not None:
        objective.load_state_dict(load_file(str(ckpt / "objective.safetensors"), device=str(d.device)), strict=True)
        trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(trainer["optimizer"])
        start_step, samples_seen = trainer["step"], trainer["samples_seen"]
        skipped_total = trainer.get("skipped_files", 0)
        if trainer.get("world_size") == d.world_size:
            set_rng_state(trainer["rng"][d.rank])
        else:
            log.warning("world size changed (%s -> %s): RNG states reseeded", trainer.get("world_size"), d.world_size)
            torch.manual_seed(tc.seed + d.rank)
        log.info("resumed from %s at step %d", ckpt, start_step)
    else:
        torch.manual_seed(tc.seed + d.rank)
        np.random.seed(tc.seed + d.rank)
        random.seed(tc.seed + d.rank)

    # -- data: the stream restarts exactly where the checkpoint left it -----------------------------
    mixture = build_mixture(schema.data, gap, objective.img_size, tc.seed, objective.frames_per_sample)
    global_batch = tc.batch_size * d.world_size
    loader = build_loader(mixture, schema.data, tc.batch_size, start_step * global_batch, d)
    batches: Iterator[dict[str, Any]] = iter(loader)

    # -- FLOPs per sample (eager, on a copy: no side effects on the trained objective) -------------
    first = next(batches)
    flops_per_sample = measure_flops_per_sample(copy.deepcopy(objective), first, d.device, autocast)
    peak = peak_flops_for(d.device, tc.peak_flops)

    # -- compile and DDP ------------------------------------------------------------------------
    model: nn.Module = torch.compile(objective) if tc.compile else objective
    if d.world_size > 1:
        model = DDP(
            model,
            device_ids=[d.device.index] if d.device.type == "cuda" else None,
            # Every objective runs the same graph each step, but some leave parameters out of the
            # loss (the CLS fusion in future prediction, the patch fusion in DINO): a static graph
            # handles them without the per-step search of find_unused_parameters.
            static_graph=not tc.ddp_find_unused,
            find_unused_parameters=tc.ddp_find_unused,
            broadcast_buffers=False,
        )
    params = [p for p in objective.parameters() if p.requires_grad]

    # -- logging ----------------------------------------------------------------------------------
    run_record = {
        "format_version": RUN_FORMAT_VERSION,
        "kind": "pretrain",
        "config": resolved,
        "seed": tc.seed,
        "rank_seeds": [tc.seed + r for r in range(d.world_size)],
        "world_size": d.world_size,
        "device": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else platform.processor() or "cpu",
        "versions": versions(),
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))},
        "data": {"sources": mixture.source_probabilities()},
        "flops_per_sample": flops_per_sample,
        "peak_flops": peak,
        "resumed_from": str(ckpt) if ckpt else None,
        "results": None,
    }
    wandb_run = None
    if d.is_main:
        write_json_atomic(out_dir / "run.json", run_record)
        log.info("output %s | %s | flops/sample %.3e | peak %s", out_dir, schema.objective.name, flops_per_sample, peak)
        if schema.wandb.mode != "disabled":
            import wandb

            wandb_run = wandb.init(
                mode=schema.wandb.mode, project=schema.wandb.project, entity=schema.wandb.entity,
                name=schema.wandb.name or out_dir.name, dir=str(out_dir), config=resolved,
                id=f"{out_dir.name}-{hashlib.sha1(str(out_dir).encode()).hexdigest()[:8]}", resume="allow",
            )

    # -- loop ------------------------------------------------------------------------------------
    stop_step = tc.total_steps
    if tc.max_steps_this_run is not None:
        stop_step = min(stop_step, start_step + tc.max_steps_this_run)
    bar = tqdm(total=tc.total_steps, initial=start_step, disable=not d.is_main, desc="pretrain", dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, float] = {}
    n_logged, t_log, skipped_since_log = 0, time.time(), 0
    samples_per_s_hist: list[float] = []
    generator = torch.Generator(device=d.device)
    batch = first
    for step in range(start_step, stop_step):
        lr = lr_at(step, oc, tc.total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if step > start_step:
            batch = next(batches)
        skipped_since_log += int(batch["n_skipped"].sum())  # a CPU tensor: no device sync
        tensors = to_device(batch, d.device, tc.channels_last)
        metrics = train_step(
            model, optimizer, params, tensors, seed_generator(generator, tc.seed, step, d.rank), autocast, oc.grad_clip
        )
        objective.after_step(step, tc.total_steps)
        samples_seen += global_batch
        for k, v in metrics.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        n_logged += 1
        bar.update(1)

        done = step + 1
        if done % tc.log_every == 0 or done == stop_step:
            last = _reduce_metrics(sums, n_logged, d)
            skipped_total += _sum_over_ranks(skipped_since_log, d)
            skipped_since_log = 0
            if not math.isfinite(last["loss"]):
                raise FloatingPointError(f"loss is {last['loss']} at step {done}; lower optim.lr or check the data")
            dt = time.time() - t_log
            sps = n_logged * global_batch / dt
            samples_per_s_hist.append(sps)
            last |= {"lr": lr, "samples_per_s": sps, "skipped_files": skipped_total}
            if peak:
                last["mfu"] = flops_per_sample * sps / d.world_size / peak
            bar.set_postfix(loss=f"{last['loss']:.4f}", sps=f"{sps:.1f}", **({"mfu": f"{last['mfu']:.1%}"} if peak else {}))
            if wandb_run is not None:
                wandb_run.log(last, step=done)
            sums, n_logged, t_log = {}, 0, time.time()

        if done % tc.ckpt_every == 0 or done == stop_step:
            rngs = gather_rng_states(d)
            if d.is_main:
                save_checkpoint(
                    out_dir, objective, optimizer, done,
                    {"samples_seen": samples_seen, "skipped_files": skipped_total, "world_size": d.world_size},
                    rngs, resolved, tc.keep_last,
                )
            if d.world_size > 1:
                dist.barrier()
    bar.close()

    # -- final export and run record ---------------------------------------------------------------
    finished = stop_step == tc.total_steps
    results = {
        "steps_done": stop_step,
        "finished": finished,
        "samples_seen": samples_seen,
        "final_metrics": last,
        "samples_per_s": float(np.median(samples_per_s_hist)) if samples_per_s_hist else None,
        "mfu": (flops_per_sample * float(np.median(samples_per_s_hist)) / d.world_size / peak)
        if (peak and samples_per_s_hist) else None,
        "skipped_files": skipped_total,
        "wall_time_s": time.time() - t_start,
        "encoder_dir": str(out_dir / "encoder") if finished else None,
    }
    if d.is_main:
        if finished:
            objective.export_encoder(out_dir / "encoder", extra={"step": stop_step})
        write_json_atomic(out_dir / "run.json", run_record | {"results": results})
        if wandb_run is not None:
            wandb_run.summary.update({k: v for k, v in results.items() if isinstance(v, (int, float))})
            wandb_run.finish()
    if d.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return RunResult(results, objective)


def _sum_over_ranks(count: int, d: Dist) -> int:
    """Sum of an integer over all ranks (at log time only)."""
    if d.world_size == 1:
        return count
    t = torch.tensor([count], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return int(t.item())


def _reduce_metrics(sums: dict[str, torch.Tensor], n: int, d: Dist) -> dict[str, float]:
    """Mean of the accumulated metrics over steps and ranks (the loop's one host sync)."""
    keys = sorted(sums)
    stacked = torch.stack([sums[k].float() for k in keys]) / n  # [M]
    if d.world_size > 1:
        dist.all_reduce(stacked)
        stacked /= d.world_size
    return dict(zip(keys, stacked.tolist()))


@hydra.main(version_base="1.3", config_path="pkg://avbr.configs.pretrain", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    sys.exit(main())
