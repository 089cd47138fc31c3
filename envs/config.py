"""Configuration and record types shared by every simulator suite.

:class:`SuiteConfig` is the Hydra schema of the ``suite`` config group (``configs/suite/*.yaml``
list only the fields they change). Every protocol detail that differs between LIBERO, OpenVLA,
LeRobot and openpi is a documented field here, with the LIBERO/OpenVLA value as default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Action layout: 6-D OSC_POSE delta (x, y, z, ax, ay, az; robosuite scales [-1, 1] to 5 cm and
#: 0.5 rad per step) and one gripper dimension, -1 = open, +1 = closed.
ACTION_DIM = 7
#: Proprio layout: eef position (3), eef orientation as axis-angle (3), gripper finger qpos (2).
STATE_DIM = 8
#: Action the protocol sends while the scene settles: no motion, gripper open.
SETTLE_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class SuiteConfig:
    """One simulator suite and its evaluation protocol.

    Attributes:
        name: registry name (``avbr.envs.list_suites()``): ``libero_spatial``, ``libero_object``,
            ``libero_goal``, ``libero_10``, ``libero_90``, ``robosuite_lift``,
            ``robosuite_pickplacecan``, ``robosuite_stack``.
        camera_size: square render size in pixels for ``agentview`` and ``wrist``. LIBERO's own
            demos and LeRobot use 128; OpenVLA/openpi evaluate at 256 (then resize to 224).
            Default 128: software rendering on CPU machines is ~3x faster than at 256.
        render: render the two cameras. ``False`` gives all-zero images of the same shape (for
            scripted-expert measurements; LIBERO steps ~10x faster without rendering).
        flip_images: the image convention of everything a policy sees, rollouts and demo files
            alike (:func:`avbr.envs.observations.policy_frames`): ``True`` rotates the frames as
            rendered by 180 degrees, ``[::-1, ::-1]``, as OpenVLA, openpi and LeRobot do (a
            left-right mirror of robosuite's own upright view ``[::-1]``); ``False`` keeps them
            as rendered (upside down, robosuite's OpenGL convention).
        num_settle_steps: steps of ``settle_action`` after setting the init state, before the
            policy acts (LIBERO/OpenVLA: 10). They do not count towards ``max_steps``.
        settle_action: the 7-D action sent while settling (OpenVLA: ``[0,0,0,0,0,0,-1]``).
        max_steps: policy steps per episode; ``None`` takes the suite default (OpenVLA: spatial
            220, object 280, goal 300, libero_10 520, libero_90 400; LeRobot uses 280 for
            spatial; robosuite tasks 400 as in robomimic rollouts).
        init_state_offset: episode ``j`` of task ``i`` starts from init state
            ``init_state_offset + j`` of task ``i`` (LIBERO: ``get_task_init_states(i)``, 50 per
            task; robosuite: the scene is sampled with numpy seed ``init_state_offset + j``). The
            assignment is fixed before any episode runs, so it never depends on finishing order.
        control_freq: controller frequency in Hz (LIBERO and robosuite default 20).
        renderer: ``egl`` or ``osmesa``; ``None`` takes ``$MUJOCO_GL``, else ``egl``. Checked at
            start-up (:func:`avbr.envs.renderer.configure_renderer`), exported to the workers.
        assets_dir: LIBERO asset directory; ``None`` searches ``$AVBR_LIBERO_ASSETS``, the
            libero package and its download cache (see :mod:`avbr.envs.libero_assets`).
        step_timeout_s: a worker silent this long during one step/reset is treated as crashed
            and restarted.
        episode_timeout_s: the same for one whole scripted-expert episode run inside a worker.
    """

    name: str = "robosuite_lift"
    camera_size: int = 128
    render: bool = True
    flip_images: bool = True
    num_settle_steps: int = 10
    settle_action: list[float] = field(default_factory=lambda: list(SETTLE_ACTION))
    max_steps: int | None = None
    init_state_offset: int = 0
    control_freq: int = 20
    renderer: str | None = None
    assets_dir: str | None = None
    step_timeout_s: float = 300.0
    episode_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        self.settle_action = [float(a) for a in self.settle_action]
        if len(self.settle_action) != ACTION_DIM:
            raise ValueError(f"settle_action must have {ACTION_DIM} values, got {self.settle_action}")
        if self.camera_size < 8:
            raise ValueError(f"camera_size must be >= 8 pixels, got {self.camera_size}")
        if self.num_settle_steps < 0 or self.init_state_offset < 0:
            raise ValueError("num_settle_steps and init_state_offset must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None (suite default), got {self.max_steps}")


def suite_config_from(node: Any) -> SuiteConfig:
    """Build a validated :class:`SuiteConfig` from a Hydra/OmegaConf node or a plain dict."""
    from omegaconf import OmegaConf  # noqa: PLC0415

    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    return SuiteConfig(**values)


def register_suite_schema() -> None:
    """Store :class:`SuiteConfig` in Hydra's ConfigStore as ``suite/suite_schema``.

    Every ``configs/suite/*.yaml`` starts from this schema (``defaults: [suite_schema, _self_]``),
    so a Hydra app that composes the ``suite`` group must call this before ``@hydra.main`` runs.
    """
    from hydra.core.config_store import ConfigStore  # noqa: PLC0415

    ConfigStore.instance().store(group="suite", name="suite_schema", node=SuiteConfig)


@dataclass(frozen=True)
class TaskInfo:
    """One task of a suite.

    Attributes:
        suite: suite registry name.
        task_id: index within the suite.
        name: short name (LIBERO problem file stem, or the robosuite environment name).
        language: natural-language instruction given to the policy.
        num_init_states: how many fixed init states exist (LIBERO 50); ``None`` = unbounded
            (robosuite: any seed is an init state).
    """

    suite: str
    task_id: int
    name: str
    language: str
    num_init_states: int | None


@dataclass(frozen=True)
class EpisodeSpec:
    """What one episode runs: ``task_id`` from init state ``init_index``; ``episode`` is its
    position in the run (``j`` of ``episodes_per_task``). ``source`` says what ``init_index``
    is (:mod:`avbr.envs.scenes`): ``eval_init_state`` (a benchmark init state, the default) or
    ``heldout_seed`` (a seed of the suite's placement sampler, for demonstrations)."""

    task_id: int
    init_index: int
    episode: int
    source: str = "eval_init_state"


@dataclass
class EpisodeRecord:
    """The result of one episode.

    Attributes:
        task_id, init_index, episode: as in :class:`EpisodeSpec`.
        success: the simulator's own success check was true at some step.
        length: policy steps taken (settle steps excluded).
        error: ``None``, or the error text (Python traceback, or a worker crash/timeout).
        crashed: the episode ended on an infrastructure failure (a simulator exception or a
            dead/silent worker), not on the policy: ``error`` holds the reason.
        init_source: ``EpisodeSpec.source`` of the episode.
        language: the task instruction.
        init_digest: fingerprint of the MuJoCo state right after the init state was set (before
            settling); equal digests mean equal initial scenes.
        frames: optional agentview frames as the policy saw them ``uint8 [T, H, W, 3]`` (videos).
        data: optional per-step arrays for demo files (see :mod:`avbr.envs.demos`).
    """

    task_id: int
    init_index: int
    episode: int
    success: bool
    length: int
    error: str | None = None
    language: str = ""
    init_digest: str = ""
    frames: np.ndarray | None = None
    data: dict[str, Any] | None = field(default=None, repr=False)
    crashed: bool = False
    init_source: str = "eval_init_state"

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable fields (no arrays)."""
        return {"task_id": self.task_id, "init_index": self.init_index, "episode": self.episode,
                "success": self.success, "length": self.length, "error": self.error,
                "init_digest": self.init_digest, "crashed": self.crashed, "init_source": self.init_source}
