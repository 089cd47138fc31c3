"""Policy heads trained on frozen encoder features: registry, normalisation, training, checkpoints.

Kept apart as LeRobot keeps them (network / policy / processing):

* the **network** (registry :data:`POLICIES`, e.g. ``bc_mlp``) maps normalised inputs
  ``[B, D_in]`` to a normalised action chunk ``[B, C, 7]``;
* the **normalisers** (:class:`Normalizer`) are fitted on the *training* demos only: features and
  proprio are standardised, actions are standardised per dimension and un-normalised after the
  forward pass;
* :class:`TrainedPolicy` bundles both and predicts raw 7-D OSC actions.

Training (:func:`train_policy`) holds out whole demos for validation and keeps the epoch with the
lowest validation L1 loss: the checkpoint is selected on held-out demos, never on rollouts
(VC-1's ``highest_success`` does the latter; ARCHITECTURE.md forbids it).

Letters: ``B`` batch, ``T`` steps of one demo, ``D`` feature width, ``C`` chunk length.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from avbr.progress import finish, progress_bar
from avbr.registry import Registry

ACTION_DIM = 7
#: Index of the gripper in a 7-D action (-1 open, +1 closed).
GRIPPER = 6


@dataclass
class PolicyConfig:
    """Schema of the ``policy`` config group (``configs/policy/*.yaml``).

    Attributes:
        name: registry name (:func:`list_policies`), e.g. ``bc_mlp``.
        chunk_size: ``C``, actions predicted per observation (targets ``a_t .. a_{t+C-1}``;
            steps past the end of a demo are masked out of the loss).
        n_action_steps: actions of each chunk executed open-loop before the next observation is
            encoded (``1 <= n_action_steps <= chunk_size``).
        hidden_dim: width of the hidden layers.
        num_layers: hidden layers (>= 1).
        dropout: dropout after each hidden layer.
        use_state: feed the 8-D proprio (eef pos, axis-angle, gripper qpos) next to the features.
        task_onehot: feed a one-hot task id (multi-task suites such as LIBERO need a task signal;
            this is the language-free stand-in).
        epochs: training epochs over the training demos.
        batch_size: samples per optimiser step.
        lr: AdamW learning rate (cosine-decayed to 0 over training).
        weight_decay: AdamW weight decay.
        val_fraction: fraction of each task's demos held out for validation (at least one demo
            when a task has two or more); the epoch with the lowest validation L1 is kept.
        binarize_gripper: send ``sign(gripper)`` (-1 open / +1 closed) instead of the regressed
            value, as OpenVLA does.
    """

    name: str = "bc_mlp"
    chunk_size: int = 8
    n_action_steps: int = 4
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.1
    use_state: bool = True
    task_onehot: bool = True
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    binarize_gripper: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"policy.chunk_size must be >= 1, got {self.chunk_size}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"policy.n_action_steps must be in [1, chunk_size={self.chunk_size}], "
                             f"got {self.n_action_steps}")
        if self.num_layers < 1 or self.hidden_dim < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("policy.num_layers, hidden_dim, epochs and batch_size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"policy.val_fraction must be in [0, 1), got {self.val_fraction}")


POLICIES: Registry[Callable[[PolicyConfig, int], nn.Module]] = Registry("policy")


def list_policies() -> list[str]:
    """Registered policy names."""
    return POLICIES.names()


@POLICIES.register("bc_mlp")
class BCMLP(nn.Module):
    """Behaviour-cloning MLP: ``[B, D_in]`` -> action chunk ``[B, C, 7]`` (normalised units).

    Args:
        cfg: policy config (``hidden_dim``, ``num_layers``, ``dropout``, ``chunk_size``).
        in_dim: ``D_in`` = feature width (+ 8 proprio) (+ number of tasks).
    """

    def __init__(self, cfg: PolicyConfig, in_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_dim), nn.LayerNorm(cfg.hidden_dim), nn.GELU(),
                       nn.Dropout(cfg.dropout)]
            width = cfg.hidden_dim
        layers.append(nn.Linear(width, cfg.chunk_size * ACTION_DIM))
        self.net = nn.Sequential(*layers)
        self.chunk_size = cfg.chunk_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, D_in]`` -> ``[B, C, 7]``."""
        return self.net(x).view(x.shape[0], self.chunk_size, ACTION_DIM)  # [B, C*7] -> [B, C, 7]


class Normalizer(nn.Module):
    """Per-dimension standardisation ``(x - mean) / std`` with statistics fitted once.

    Dimensions with ``std < eps`` (constant in the training data) get ``std = 1``.

    Args:
        dim: width of the vectors.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @classmethod
    def fit(cls, x: np.ndarray, eps: float = 1e-6) -> Normalizer:
        """Statistics of ``x [M, dim]`` (the training split only)."""
        norm = cls(x.shape[1])
        std = x.std(axis=0)
        norm.mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
        norm.std.copy_(torch.as_tensor(np.where(std < eps, 1.0, std), dtype=torch.float32))
        return norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``[..., dim]``."""
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalise ``[..., dim]``."""
        return x * self.std + self.mean


@dataclass
class DemoArrays:
    """Per-step training data of one demo.

    Attributes:
        task_index: position of the demo's task in the trained task list (one-hot index).
        features: ``float32 [T, D]`` frozen encoder features of the ``(o_{t-k}, o_t)`` pairs.
        state: ``float32 [T, 8]`` proprio.
        actions: ``float32 [T, 7]`` the demo's actions.
    """

    task_index: int
    features: np.ndarray
    state: np.ndarray
    actions: np.ndarray


class TrainedPolicy(nn.Module):
    """A policy network with its fitted normalisers; predicts raw OSC action chunks.

    Args:
        cfg: policy config.
        feature_dim: ``D`` of the encoder features.
        num_tasks: tasks of the one-hot input (used when ``cfg.task_onehot``).
        state_dim: proprio width.
    """

    def __init__(self, cfg: PolicyConfig, feature_dim: int, num_tasks: int, state_dim: int = 8) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_dim, self.num_tasks, self.state_dim = feature_dim, num_tasks, state_dim
        in_dim = feature_dim + (state_dim if cfg.use_state else 0) + (num_tasks if cfg.task_onehot else 0)
        self.net = POLICIES.get(cfg.name)(cfg, in_dim)
        self.feature_norm = Normalizer(feature_dim)
        self.state_norm = Normalizer(state_dim)
        self.action_norm = Normalizer(ACTION_DIM)

    def inputs(self, features: torch.Tensor, state: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """Normalised network input ``[B, D_in]`` from features ``[B, D]``, state ``[B, 8]`` and
        task indices ``[B]``."""
        parts = [self.feature_norm(features)]
        if self.cfg.use_state:
            parts.append(self.state_norm(state))
        if self.cfg.task_onehot:
            parts.append(nn.functional.one_hot(task_index.long(), self.num_tasks).float())
        return torch.cat(parts, dim=-1)

    @torch.inference_mode()
    def predict(self, features: torch.Tensor, state: torch.Tensor, task_index: torch.Tensor) -> np.ndarray:
        """Raw action chunks ``float32 [B, C, 7]`` (gripper binarised when configured, all
        dimensions clipped to the controller's [-1, 1])."""
        self.eval()
        chunk = self.action_norm.inverse(self.net(self.inputs(features, state, task_index)))
        chunk = chunk.clamp(-1.0, 1.0)
        if self.cfg.binarize_gripper:
            chunk[..., GRIPPER] = torch.where(chunk[..., GRIPPER] >= 0, 1.0, -1.0)
        return chunk.cpu().numpy().astype(np.float32)

    def save(self, path: str | Path, meta: dict[str, Any]) -> None:
        """Write ``<path>.safetensors`` (weights and normalisers) and ``<path>.json`` (config,
        sizes, ``meta``)."""
        path = Path(path)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path.with_suffix(".safetensors")))
        info = {"format_version": 1, "policy": asdict(self.cfg), "feature_dim": self.feature_dim,
                "num_tasks": self.num_tasks, "state_dim": self.state_dim, "meta": meta}
        path.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> tuple[TrainedPolicy, dict[str, Any]]:
        """Rebuild from :meth:`save` output (strict key check); returns ``(policy, meta)``."""
        path = Path(path)
        info = json.loads(path.with_suffix(".json").read_text())
        policy = cls(PolicyConfig(**info["policy"]), info["feature_dim"], info["num_tasks"], info["state_dim"])
        policy.load_state_dict(load_file(str(path.with_suffix(".safetensors"))), strict=True)
        return policy.eval(), info["meta"]


def split_demos(demos: Sequence[DemoArrays], val_fraction: float, seed: int
                ) -> tuple[list[DemoArrays], list[DemoArrays]]:
    """Hold out ``ceil(val_fraction * n)`` demos of each task (none when a task has one demo).

    Returns:
        ``(train, val)``; the split is a pure function of ``seed``.
    """
    rng = np.random.default_rng(seed)
    train: list[DemoArrays] = []
    val: list[DemoArrays] = []
    for task in sorted({d.task_index for d in demos}):
        own = [d for d in demos if d.task_index == task]
        order = rng.permutation(len(own))
        n_val = min(math.ceil(val_fraction * len(own)), len(own) - 1) if val_fraction > 0 else 0
        val += [own[i] for i in order[:n_val]]
        train += [own[i] for i in order[n_val:]]
    return train, val


def chunk_targets(actions: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Action chunks of one demo.

    Args:
        actions: ``[T, 7]``.
        chunk: ``C``.

    Returns:
        ``targets [T, C, 7]`` (``a_t .. a_{t+C-1}``, padded with the last action) and
        ``valid bool [T, C]`` (False on padding).
    """
    t_len = len(actions)
    idx = np.arange(t_len)[:, None] + np.arange(chunk)[None, :]  # [T, C]
    valid = idx < t_len
    return actions[np.minimum(idx, t_len - 1)], valid


def _stack(demos: Sequence[DemoArrays], chunk: int) -> dict[str, torch.Tensor]:
    targets, valid = zip(*(chunk_targets(d.actions, chunk) for d in demos))
    return {
        "features": torch.as_tensor(np.concatenate([d.features for d in demos]), dtype=torch.float32),
        "state": torch.as_tensor(np.concatenate([d.state for d in demos]), dtype=torch.float32),
        "task": torch.as_tensor(np.concatenate([np.full(len(d.actions), d.task_index) for d in demos])),
        "targets": torch.as_tensor(np.concatenate(targets), dtype=torch.float32),  # [M, C, 7]
        "valid": torch.as_tensor(np.concatenate(valid)),  # [M, C]
    }


def _masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean L1 over valid chunk steps: ``pred``/``target [B, C, 7]``, ``valid [B, C]``."""
    err = (pred - target).abs().mean(-1) * valid  # [B, C]
    return err.sum() / valid.sum().clamp_min(1)


def train_policy(cfg: PolicyConfig, demos: Sequence[DemoArrays], num_tasks: int, seed: int,
                 log: Callable[[dict[str, float]], None] | None = None) -> tuple[TrainedPolicy, dict[str, Any]]:
    """Fit normalisers on the training split, train, keep the best epoch on validation L1.

    Args:
        cfg: policy config.
        demos: every demo of the evaluated tasks.
        num_tasks: size of the one-hot task input.
        seed: seeds the split, the initialisation and the batch order.
        log: called once per epoch with ``{"epoch", "train_loss", "val_loss"}``.

    Returns:
        ``(policy, selection)`` with ``selection = {"epoch", "val_loss", "train_demos",
        "val_demos", "criterion"}``. Without validation demos the last epoch is kept and
        ``criterion`` says so.
    """
    if not demos:
        raise ValueError("no demos to train the policy on")
    torch.manual_seed(seed)
    train, val = split_demos(demos, cfg.val_fraction, seed)
    policy = TrainedPolicy(cfg, demos[0].features.shape[1], num_tasks, demos[0].state.shape[1])
    policy.feature_norm.load_state_dict(Normalizer.fit(np.concatenate([d.features for d in train])).state_dict())
    policy.state_norm.load_state_dict(Normalizer.fit(np.concatenate([d.state for d in train])).state_dict())
    policy.action_norm.load_state_dict(Normalizer.fit(np.concatenate([d.actions for d in train])).state_dict())
    tr = _stack(train, cfg.chunk_size)
    va = _stack(val, cfg.chunk_size) if val else None
    with torch.no_grad():
        tr_in = policy.inputs(tr["features"], tr["state"], tr["task"])
        tr_y = policy.action_norm(tr["targets"])
        va_in = policy.inputs(va["features"], va["state"], va["task"]) if va else None
        va_y = policy.action_norm(va["targets"]) if va else None
    opt = torch.optim.AdamW(policy.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr_in) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    best: dict[str, Any] = {"epoch": -1, "val_loss": math.inf}  # val_loss None without val demos
    best_state: dict[str, torch.Tensor] = {}
    bar = progress_bar(total=cfg.epochs, desc=f"policy seed {seed}", unit="epoch")
    for epoch in range(cfg.epochs):
        policy.net.train()
        order = torch.randperm(len(tr_in), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = _masked_l1(policy.net(tr_in[idx]), tr_y[idx], tr["valid"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        policy.net.eval()
        with torch.no_grad():
            val_loss = float(_masked_l1(policy.net(va_in), va_y, va["valid"])) if va else math.nan
        if log is not None:
            log({"epoch": epoch, "train_loss": total / len(tr_in), "val_loss": val_loss})
        if va is None or val_loss < best["val_loss"]:
            best = {"epoch": epoch, "val_loss": val_loss if va else None}
            best_state = {k: v.detach().clone() for k, v in policy.net.state_dict().items()}
        bar.update(1)
        bar.set_postfix_str(f"train {total / len(tr_in):.4f}, val {val_loss:.4f}")
    finish(bar, f"{cfg.epochs} epochs on {len(train)} demos, kept epoch {best['epoch']}"
           + (f" (val L1 {best['val_loss']:.4f})" if va else ""))
    policy.net.load_state_dict(best_state)
    selection = {**best, "train_demos": len(train), "val_demos": len(val),
                 "criterion": "min held-out demo L1" if va else "last epoch (no validation demos)"}
    return policy.eval(), selection
