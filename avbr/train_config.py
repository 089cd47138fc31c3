"""The pretraining config schema: one documented dataclass per group of ``configs/pretrain/``.

``python -m avbr.train`` validates its Hydra config against :class:`PretrainConfig` (stored in
Hydra's ConfigStore as ``pretrain_schema``, the first default of ``configs/pretrain/config.yaml``),
so unknown keys and wrong types fail when the config is composed. The YAML files list only what
they change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

__all__ = ["GapConfig", "SourceConfig", "DataConfig", "ModelConfig", "ObjectiveConfig", "OptimConfig", "TrainConfig",
           "WandbConfig", "PretrainConfig", "PRECISIONS"]

#: Values of ``train.precision``.
PRECISIONS = ("auto", "bf16", "fp32")

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
    """The training objective (``avbr.objectives``).

    Attributes:
        name: objective registry name: future_prediction | videomae | dino_temporal.
        params: the objective's own options (the fields of its ``Config`` dataclass).
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
    """Weights & Biases logging (rank 0 only).

    Attributes:
        mode: offline (default: nothing leaves the machine; ``wandb sync`` later) | online | disabled.
        project, entity, name: W&B run coordinates (name defaults to the output folder's name).
    """

    mode: str = "offline"
    project: str = "avbr-pretrain"
    entity: Optional[str] = None
    name: Optional[str] = None


@dataclass
class PretrainConfig:
    """A whole pretraining run: one field per config group.

    Attributes:
        gap: gap sampling and loss weighting (:class:`GapConfig`).
        data: the data mixture (:class:`DataConfig`).
        model: encoder and decoder (:class:`ModelConfig`).
        objective: the objective (:class:`ObjectiveConfig`).
        optim: AdamW and the lr schedule (:class:`OptimConfig`).
        train: the loop (:class:`TrainConfig`).
        wandb: logging (:class:`WandbConfig`).

    Raises (on construction): ``ValueError`` for an unknown precision or wandb mode, and for a
    warmup that is not shorter than the run.
    """

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
