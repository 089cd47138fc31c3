"""Pretraining: ``python -m avbr.train`` (Hydra app, configs in ``configs/pretrain/``).

:func:`run` reads top to bottom like nanoGPT's ``train.py``, one function per step: defaults
(validated config, output folder) -> DDP and precision -> init (scratch | resume) and optimiser ->
data (from the checkpoint's sample count) -> FLOPs, compile and DDP -> run record -> RNG restore
(after everything that draws from the RNGs) -> loop (lr, step, clip, log, checkpoint) -> encoder
export and the final record. The config schema is :mod:`avbr.train_config`; the lr schedule is
:func:`avbr.schedule.lr_at`. Init comes before data because the stream needs the model's input
size and the checkpoint's position.

Launch::

    python -m avbr.train                                   # smoke run on procedural videos (CPU ok)
    torchrun --nproc_per_node 8 -m avbr.train +experiment=seed001_two_stream data.sources.egodex.root=/data/egodex
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint $HEAD:29500 -m avbr.train ...

DDP uses ``env://`` (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``), NCCL on
GPUs and gloo on CPU. Re-running with the same ``train.output_dir`` resumes from its latest
checkpoint exactly (weights, optimiser, step, data position, RNG of every rank). Resuming with a
different world size continues the data stream at the checkpoint's global sample count (the RNGs
are then reseeded, so that resume is not bitwise).

Output folder (``train.output_dir``)::

    config.yaml                      resolved config
    run.json                         versioned run record: config, seeds, provenance (avbr.provenance:
                                     commit or package hash, versions, host, time), FLOPs, final
                                     results (rewritten at the end)
    checkpoints/step_XXXXXXX/        objective.safetensors (full objective: model, decoder, teacher)
                                     trainer.pt (optimiser, step, RNG of every rank, samples_seen,
                                     world_size)
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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

from avbr.cli import ResumeMismatchError, entry_point
from avbr.data import SOURCES, GapSchedule, PairMixture, StreamSampler, collate_pairs
from avbr.objectives import Objective, build_objective, frames_to_float
from avbr.progress import progress_bar
from avbr.provenance import provenance
from avbr.schedule import lr_at
from avbr.train_config import DataConfig, OptimConfig, PretrainConfig, TrainConfig

log = logging.getLogger("avbr.train")

#: Version of ``run.json``. 2: ``git`` and ``versions`` moved into ``provenance`` (avbr.provenance);
#: ``resumed_at_sample`` added.
RUN_FORMAT_VERSION = 2
CHECKPOINT_FORMAT_VERSION = 1


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
# Pure functions: peak FLOPs, FLOPs per sample (the lr schedule is avbr.schedule.lr_at)
# ---------------------------------------------------------------------------------------------
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
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
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None],
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


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The steps of a run, in order
# ---------------------------------------------------------------------------------------------
@dataclass
class ResumeState:
    """What a checkpoint carries into this process; zeros and ``None`` for a fresh run.

    Attributes:
        checkpoint: the ``step_*`` folder resumed from, or ``None``.
        step: optimiser steps done.
        samples_seen: global samples consumed (the data position, independent of the world size).
        skipped_files: unreadable files skipped so far.
        rng: this rank's saved RNG state; ``None`` when fresh or when the world size changed.
    """

    checkpoint: Path | None = None
    step: int = 0
    samples_seen: int = 0
    skipped_files: int = 0
    rng: dict[str, Any] | None = None


def prepare_output(cfg: DictConfig, d: Dist) -> tuple[PretrainConfig, dict[str, Any], Path]:
    """Validate ``cfg``, agree on the output folder (rank 0's wins: ``${now:}`` may differ per rank)
    and write ``config.yaml``. Returns the schema object, the resolved dict and the folder."""
    schema: PretrainConfig = OmegaConf.to_object(cfg)  # validates fields and cross-field rules
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if not d.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    out_dir = [str(Path(schema.train.output_dir).resolve())]
    if d.world_size > 1:
        dist.broadcast_object_list(out_dir, src=0)
    out = Path(out_dir[0])
    resolved["train"]["output_dir"] = str(out)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return schema, resolved, out


def setup_precision(precision: str, device: torch.device) -> Callable[[], Any]:
    """TF32 matmuls on GPU, and the autocast factory of ``train.precision``."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return make_autocast(precision, device)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def init_objective(
    schema: PretrainConfig, gap: GapSchedule, out_dir: Path, d: Dist
) -> tuple[Objective, torch.optim.AdamW, ResumeState]:
    """The objective (identical init on every rank: ``train.seed``) and its optimiser, then the
    checkpoint's weights, optimiser state and counters when resuming. RNG states are *not*
    restored here: :func:`restore_rng` does that after every other consumer."""
    tc = schema.train
    torch.manual_seed(tc.seed)
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
    optimizer = build_optimizer(objective, schema.optim, d.device)
    seed_everything(tc.seed + d.rank)

    ckpt = None
    if tc.resume != "never":
        where = out_dir if tc.resume == "auto" else Path(tc.resume).expanduser()
        ckpt = find_checkpoint(where)
        if ckpt is None and tc.resume != "auto":
            raise FileNotFoundError(
                f"train.resume={tc.resume}: no checkpoint found (looked for {where}/trainer.pt, "
                f"{where}/checkpoints/latest and {where}/latest); pass a run folder or a step_* folder"
            )
    if ckpt is None:
        return objective, optimizer, ResumeState()
    check_same_run(ckpt, schema)
    objective.load_state_dict(load_file(str(ckpt / "objective.safetensors"), device=str(d.device)), strict=True)
    trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    same_world = trainer.get("world_size") == d.world_size
    if not same_world:
        log.warning("world size changed (%s -> %s): RNG states are reseeded; the data stream continues at "
                    "sample %d", trainer.get("world_size"), d.world_size, trainer["samples_seen"])
    log.info("resuming from %s at step %d, sample %d", ckpt, trainer["step"], trainer["samples_seen"])
    return objective, optimizer, ResumeState(
        checkpoint=ckpt, step=trainer["step"], samples_seen=trainer["samples_seen"],
        skipped_files=trainer.get("skipped_files", 0), rng=trainer["rng"][d.rank] if same_world else None,
    )


# The config sections that make a checkpoint another run's: resuming may change anything else
# (steps, workers, logging, world size) but not what is trained, on what, from which seed.
RUN_IDENTITY = ("model", "objective", "data.sources", "train.seed")


def check_same_run(ckpt: Path, schema: PretrainConfig) -> None:
    """Raise :class:`ResumeMismatchError` when ``ckpt/config.yaml`` differs in :data:`RUN_IDENTITY`."""
    if not (ckpt / "config.yaml").exists():
        return
    stored = OmegaConf.load(ckpt / "config.yaml")
    current = OmegaConf.create(dataclasses.asdict(schema))
    diff = [k for k in RUN_IDENTITY if OmegaConf.select(stored, k) != OmegaConf.select(current, k)]
    if diff:
        raise ResumeMismatchError(
            f"{ckpt} is a checkpoint of a different run (differs in: {', '.join(diff)}; its config is "
            f"{ckpt / 'config.yaml'}). Choose a new train.output_dir for this run, or resume with that run's settings."
        )


def open_stream(
    schema: PretrainConfig, gap: GapSchedule, img_size: int, frames: int, start: int, d: Dist
) -> tuple[PairMixture, Iterator[dict[str, Any]]]:
    """The mixture (``frames`` per sample: 2 pairs, 3 triples) and this rank's batch iterator from
    global sample ``start`` (where the checkpoint left)."""
    mixture = build_mixture(schema.data, gap, img_size, schema.train.seed, frames)
    loader = build_loader(mixture, schema.data, schema.train.batch_size, start, d)
    return mixture, iter(loader)  # iter() draws the loader's base seed from the global torch RNG


def wrap_model(objective: Objective, tc: TrainConfig, d: Dist) -> nn.Module:
    """``torch.compile`` and DDP around the objective (the objective itself stays unwrapped for saving)."""
    model: nn.Module = torch.compile(objective) if tc.compile else objective
    if d.world_size > 1:
        model = DDP(
            model,
            device_ids=[d.device.index] if d.device.type == "cuda" else None,
            # Every objective runs the same graph each step, but some leave parameters out of the
            # loss (the pixel fusion in DINO-temporal, the CLS fusion under decoder inputs A/B): a
            # static graph handles them without the per-step search of find_unused_parameters.
            static_graph=not tc.ddp_find_unused,
            find_unused_parameters=tc.ddp_find_unused,
            broadcast_buffers=False,
        )
    return model


def restore_rng(resume: ResumeState, seed: int, d: Dist) -> None:
    """Put every RNG where the checkpoint left it (or reseed when the world size changed).

    Called after every consumer of the global RNGs that runs before the loop (``iter(loader)``,
    the FLOP probe's forward through drop-path, compile, W&B), so the first resumed step draws
    exactly what the uninterrupted run drew. A fresh run keeps the seeds of :func:`init_objective`.
    """
    if resume.rng is not None:
        set_rng_state(resume.rng)
    elif resume.checkpoint is not None:
        seed_everything(seed + d.rank)


def make_run_record(
    schema: PretrainConfig, resolved: dict[str, Any], d: Dist, mixture: PairMixture, flops_per_sample: float,
    peak: float | None, resume: ResumeState,
) -> dict[str, Any]:
    """The ``run.json`` record (``results`` is filled at the end)."""
    tc = schema.train
    return {
        "format_version": RUN_FORMAT_VERSION,
        "kind": "pretrain",
        "config": resolved,
        "seed": tc.seed,
        "rank_seeds": [tc.seed + r for r in range(d.world_size)],
        "world_size": d.world_size,
        "device": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else platform.processor() or "cpu",
        "provenance": provenance(),
        "data": {"sources": mixture.source_probabilities()},
        "flops_per_sample": flops_per_sample,
        "peak_flops": peak,
        "resumed_from": str(resume.checkpoint) if resume.checkpoint else None,
        "resumed_at_sample": resume.samples_seen if resume.checkpoint else None,
        "results": None,
    }


def start_wandb(schema: PretrainConfig, resolved: dict[str, Any], out_dir: Path) -> Any:
    """A W&B run (rank 0), resumed into the same id for the same output folder; ``None`` when disabled."""
    if schema.wandb.mode == "disabled":
        return None
    import wandb  # noqa: PLC0415 - optional at import time

    return wandb.init(
        mode=schema.wandb.mode, project=schema.wandb.project, entity=schema.wandb.entity,
        name=schema.wandb.name or out_dir.name, dir=str(out_dir), config=resolved,
        id=f"{out_dir.name}-{hashlib.sha1(str(out_dir).encode()).hexdigest()[:8]}", resume="allow",
    )


@dataclass
class LoopOutcome:
    """What the loop measured: last logged metrics, samples/s and data-wait fraction per log window, counters."""

    stop_step: int
    samples_seen: int
    skipped_files: int
    last: dict[str, float]
    samples_per_s: list[float]
    data_wait: list[float]


def train_loop(
    *, model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, batches: Iterator[dict[str, Any]],
    first: dict[str, Any], schema: PretrainConfig, resolved: dict[str, Any], out_dir: Path, d: Dist,
    autocast: Callable[[], Any], resume: ResumeState, flops_per_sample: float, peak: float | None, wandb_run: Any,
) -> LoopOutcome:
    """Steps ``resume.step .. stop``: lr, step, log every ``log_every``, checkpoint every ``ckpt_every``."""
    tc, oc = schema.train, schema.optim
    global_batch = tc.batch_size * d.world_size
    params = [p for p in objective.parameters() if p.requires_grad]
    start_step, samples_seen, skipped_total = resume.step, resume.samples_seen, resume.skipped_files
    stop_step = tc.total_steps
    if tc.max_steps_this_run is not None:
        stop_step = min(stop_step, start_step + tc.max_steps_this_run)
    bar = progress_bar(total=tc.total_steps, initial=start_step, enabled=d.is_main, desc="pretrain", unit="step")
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, float] = {}
    n_logged, t_log, skipped_since_log = 0, time.time(), 0
    samples_per_s_hist: list[float] = []
    # data_wait: this rank's seconds blocked in next(batches) over the window's wall time (0 = the
    # workers keep up; the GPU idles for that fraction otherwise).
    wait_s, data_wait_hist = 0.0, []
    generator = torch.Generator(device=d.device)
    batch = first
    for step in range(start_step, stop_step):
        lr = lr_at(step, lr=oc.lr, min_lr=oc.min_lr, warmup_steps=oc.warmup_steps, total_steps=tc.total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if step > start_step:
            t_wait = time.perf_counter()
            batch = next(batches)
            wait_s += time.perf_counter() - t_wait
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
            data_wait_hist.append(wait_s / dt)
            last |= {"lr": lr, "samples_per_s": sps, "data_wait": wait_s / dt, "skipped_files": skipped_total}
            if peak:
                last["mfu"] = flops_per_sample * sps / d.world_size / peak
            bar.set_postfix(loss=f"{last['loss']:.4f}", sps=f"{sps:.1f}", wait=f"{last['data_wait']:.1%}",
                            **({"mfu": f"{last['mfu']:.1%}"} if peak else {}))
            if wandb_run is not None:
                wandb_run.log(last, step=done)
            sums, n_logged, t_log, wait_s = {}, 0, time.time(), 0.0

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
    return LoopOutcome(stop_step, samples_seen, skipped_total, last, samples_per_s_hist, data_wait_hist)


def finish_run(
    outcome: LoopOutcome, *, objective: Objective, schema: PretrainConfig, run_record: dict[str, Any], out_dir: Path,
    d: Dist, flops_per_sample: float, peak: float | None, wandb_run: Any, t_start: float,
) -> dict[str, Any]:
    """Export the encoder when the run is done, rewrite ``run.json`` with the results, close W&B and DDP."""
    finished = outcome.stop_step == schema.train.total_steps
    sps = float(np.median(outcome.samples_per_s)) if outcome.samples_per_s else None
    results = {
        "steps_done": outcome.stop_step,
        "finished": finished,
        "samples_seen": outcome.samples_seen,
        "final_metrics": outcome.last,
        "samples_per_s": sps,
        "mfu": (flops_per_sample * sps / d.world_size / peak) if (peak and sps) else None,
        # median over log windows of rank 0's time waiting for a batch / wall time
        "data_wait": float(np.median(outcome.data_wait)) if outcome.data_wait else None,
        "skipped_files": outcome.skipped_files,
        "wall_time_s": time.time() - t_start,
        "encoder_dir": str(out_dir / "encoder") if finished else None,
    }
    if d.is_main:
        if finished:
            objective.export_encoder(out_dir / "encoder", extra={"step": outcome.stop_step})
        write_json_atomic(out_dir / "run.json", run_record | {"results": results})
        if wandb_run is not None:
            wandb_run.summary.update({k: v for k, v in results.items() if isinstance(v, (int, float))})
            wandb_run.finish()
    if d.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


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
    # -- defaults: validated config, output folder, config.yaml ----------------------------------
    d = setup_distributed()
    schema, resolved, out_dir = prepare_output(cfg, d)
    tc = schema.train
    # -- DDP and precision ---------------------------------------------------------------------
    autocast = setup_precision(tc.precision, d.device)
    # -- init (scratch | resume) and optimiser ----------------------------------------------------
    gap = GapSchedule(**dataclasses.asdict(schema.gap))
    objective, optimizer, resume = init_objective(schema, gap, out_dir, d)
    # -- data: the stream restarts at the checkpoint's sample count (any world size) --------------
    mixture, batches = open_stream(schema, gap, objective.img_size, objective.frames_per_sample, resume.samples_seen, d)
    first = next(batches)
    # -- FLOPs per sample (eager, on a copy: no side effects on the trained objective), compile, DDP -
    flops_per_sample = measure_flops_per_sample(copy.deepcopy(objective), first, d.device, autocast)
    peak = peak_flops_for(d.device, tc.peak_flops)
    model = wrap_model(objective, tc, d)
    # -- run record and logging -------------------------------------------------------------------
    run_record = make_run_record(schema, resolved, d, mixture, flops_per_sample, peak, resume)
    wandb_run = None
    if d.is_main:
        write_json_atomic(out_dir / "run.json", run_record)
        log.info("output %s | %s | flops/sample %.3e | peak %s", out_dir, schema.objective.name, flops_per_sample, peak)
        wandb_run = start_wandb(schema, resolved, out_dir)
    # -- RNGs last: everything above may draw from them --------------------------------------------
    restore_rng(resume, tc.seed, d)
    # -- loop, then the encoder export and the final record -----------------------------------------
    outcome = train_loop(
        model=model, objective=objective, optimizer=optimizer, batches=batches, first=first, schema=schema,
        resolved=resolved, out_dir=out_dir, d=d, autocast=autocast, resume=resume,
        flops_per_sample=flops_per_sample, peak=peak, wandb_run=wandb_run,
    )
    results = finish_run(outcome, objective=objective, schema=schema, run_record=run_record, out_dir=out_dir, d=d,
                         flops_per_sample=flops_per_sample, peak=peak, wandb_run=wandb_run, t_start=t_start)
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


@entry_point
@hydra.main(version_base="1.3", config_path="pkg://avbr.configs.pretrain", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    sys.exit(main())
