"""Demo files: the one writer and the one reader of LIBERO / robomimic hdf5 demonstrations.

Every part of AVBR that reads demo files (the LIBERO evaluation's policy data, the pretraining
source ``hdf5_demos``, the VLA fine-tuning dataset) reads them through :class:`DemoFile`, so
frames, step alignment and no-op filtering are the same everywhere.

Layout (one file per task; ``T`` steps)::

    data/                                   attrs: env_name, env_args (JSON), problem_info (JSON),
                                                   bddl_file_name, bddl_file_content,
                                                   macros_image_convention, num_demos, total,
                                                   [AVBR files] avbr_suite, avbr_task_id,
                                                   avbr_obs_alignment
      demo_<i>/                             attrs: num_samples, init_state, model_file,
                                                   [AVBR files] avbr_init_index, init_source,
                                                   init_seed, init_scene_state
        obs/agentview_rgb     uint8 [T,H,W,3]   as rendered (robomimic: obs/agentview_image)
        obs/eye_in_hand_rgb   uint8 [T,H,W,3]   (robomimic: obs/robot0_eye_in_hand_image)
        obs/ee_states         float64 [T,6]     eef pos (3) + axis-angle (3)
        obs/ee_pos, obs/ee_ori float64 [T,3]    the two halves of ee_states
        obs/gripper_states    float64 [T,2]     finger joint positions
        obs/joint_states      float64 [T,7]     arm joint positions
        actions               float64 [T,7]     OSC_POSE delta, gripper -1 open / +1 closed
        states                float64 [T,S]     flattened MuJoCo state
        robot_states          float64 [T,9]     gripper qpos (2), eef pos (3), eef quat xyzw (4)
        rewards, dones        uint8 [T]         0 ..., 1 at the last step (successful episode)

**Images** are stored as the simulator renders them (robosuite's default
``macros.IMAGE_CONVENTION = "opengl"``, upside down), in the official LIBERO files and in ours;
``data.macros_image_convention`` records it (a file saying ``"opencv"`` holds robosuite's upright
``[::-1]`` view and is turned back first). The reader then applies
:func:`avbr.envs.observations.policy_frames` with ``flip_images`` (= ``SuiteConfig.flip_images``),
the same function that converts rollout observations.

**Step alignment.** The reader returns steps where observation ``t`` is the one the policy saw
*before* ``actions[t]`` (and ``states[t]`` is the simulator state it was rendered from). Files
differ in how they store it; ``data.avbr_obs_alignment`` says which, else it is detected
(:func:`detect_alignment`):

* ``obs_before_action``: AVBR's scripted demos (:func:`avbr.envs.worker.demo_step` records the
  observation, then steps; the file starts after the settle steps), robomimic's
  ``dataset_states_to_obs.py`` and OpenVLA's regenerated ``*_no_noops`` files.
* ``obs_after_action``: the official LIBERO ``*_demo.hdf5`` files. LIBERO's
  ``scripts/create_dataset.py`` (Lifelong-Robot-Learning/LIBERO @ 1952000, ``main``) restores
  ``states[0]`` of the raw teleoperation file, then for every raw action ``j`` calls
  ``obs = env.step(actions[j])`` and records that ``obs``, i.e. the observation *after* action
  ``j``, next to ``actions[j]`` and the raw ``states[j]`` (the state *before* it). It skips
  ``j < cap_index = 5`` ("the force sensor is not stable in the beginning"). So stored row ``i``
  holds ``o_{i+6}`` (raw numbering), ``a_{i+5}`` and ``s_{i+5}``. The reader pairs stored
  observation ``i`` with action ``i + 1`` (and state ``i + 1``, reward/done ``i + 1``):
  ``T - 1`` aligned steps, which start at raw step 6 (the first 5 raw steps and the action
  ``a_5``, whose observation was never stored, are lost) and drop the final observation (no
  action follows it).

**No-op filtering** (``drop_noops``, on by default, as OpenVLA and openpi train): OpenVLA's
``experiments/robot/libero/regenerate_libero_dataset.py`` (``is_noop``, read in the fork
S444H/openvla @ 8f07da6) skips an action when the norm of its first 6 dimensions is
``< 1e-4`` and its gripper command equals the previous *kept* action's (the first action: the
norm test alone). The rule is applied here to the aligned steps. OpenVLA re-simulates without the
skipped actions; a stored file cannot be re-simulated, so the kept observation after a dropped
no-op is the one the original demo recorded after that (motionless) step.

**Where each demo started** (:mod:`avbr.envs.scenes`). Demos are numbered in the order episodes
finished (``demo_<i>.attrs["avbr_init_index"]`` gives each one's start). ``init_source``
(``heldout_seed``: a held-out placement-sampler seed, what ``make_demos`` writes; or
``eval_init_state``), ``init_seed`` (that seed, or the init-state index) and ``init_scene_state``
(the flattened MuJoCo state right after the reset, before the settle steps, which the evaluation
compares with its init states).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avbr.cli import UserError
from avbr.envs import observations
from avbr.envs.config import EpisodeRecord

OBS_KEYS = ("agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states")
STEP_KEYS = ("actions", "states", "robot_states")
#: Reader camera name -> the dataset names under ``obs/`` it may have (LIBERO, robomimic).
CAMERAS = {"agentview": ("agentview_rgb", "agentview_image"),
           "wrist": ("eye_in_hand_rgb", "robot0_eye_in_hand_image")}
IMAGE_CONVENTION = "opengl"
#: ``data`` attribute recording how observations pair with actions (written by :class:`DemoWriter`).
ALIGNMENT_ATTR = "avbr_obs_alignment"
#: OpenVLA's no-op threshold on the norm of the 6 arm dimensions.
NOOP_THRESHOLD = 1e-4


def _before(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n), np.arange(n)


def _after(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(max(n - 1, 0)), np.arange(1, n)


#: Alignment name -> ``n stored rows -> (observation rows, action rows)``, both ``int [T]``.
ALIGNMENTS: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    "obs_before_action": _before,
    "obs_after_action": _after,
}


class DemoFileError(UserError, ValueError):
    """A demo file cannot be used: unreadable, truncated, not the layout, or the wrong task.
    ``path`` names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"demo file {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class DemoTaskMismatchError(DemoFileError):
    """The file's ``problem_info``/BDDL names another suite or task than the one it was chosen for."""


@dataclass(frozen=True)
class DemoReadOptions:
    """How demo files are read (the same for every reader).

    Attributes:
        flip_images: ``SuiteConfig.flip_images``; frames go through
            :func:`avbr.envs.observations.policy_frames` with it.
        drop_noops: drop OpenVLA's no-op steps (module docstring).
        alignment: ``"auto"`` (``data.avbr_obs_alignment``, else :func:`detect_alignment`) or a
            name in :data:`ALIGNMENTS` to override it.
    """

    flip_images: bool = True
    drop_noops: bool = True
    alignment: str = "auto"

    def __post_init__(self) -> None:
        if self.alignment != "auto" and self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be 'auto' or one of {sorted(ALIGNMENTS)}, got {self.alignment!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-able settings (part of every cache key built on read frames)."""
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def detect_alignment(attrs: Mapping[str, Any]) -> str:
    """The alignment of a file from its ``data`` attributes (see the module docstring).

    ``avbr_obs_alignment`` if written; AVBR files from before it (``avbr_suite``) are
    ``obs_before_action``; LIBERO's ``create_dataset.py`` output (it writes ``problem_info``,
    ``bddl_file_name`` and ``macros_image_convention``; OpenVLA's regenerated files write no
    attributes, robomimic's no ``problem_info``) is ``obs_after_action``; anything else
    ``obs_before_action``.
    """
    if ALIGNMENT_ATTR in attrs:
        return _text(attrs[ALIGNMENT_ATTR])
    if "avbr_suite" in attrs:
        return "obs_before_action"
    if all(k in attrs for k in ("problem_info", "bddl_file_name", "macros_image_convention")):
        return "obs_after_action"
    return "obs_before_action"


def keep_non_noops(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """OpenVLA's no-op rule over a sequence: ``bool [T]``, ``True`` for the steps kept.

    Args:
        actions: ``float [T, 7]``, gripper last.
        threshold: on ``||a[:6]||``.
    """
    keep = np.ones(len(actions), dtype=bool)
    prev: np.ndarray | None = None
    for t, action in enumerate(actions):
        still = np.linalg.norm(action[:-1]) < threshold
        if still and (prev is None or action[-1] == prev[-1]):
            keep[t] = False
        else:
            prev = action
    return keep


@dataclass(frozen=True)
class DemoFileInfo:
    """What a demo file says about itself.

    Attributes:
        path: the file.
        language: ``problem_info["language_instruction"]`` ("" when absent).
        suite: ``avbr_suite``, else the folder of ``bddl_file_name`` (LIBERO keeps a suite's BDDL
            files in ``bddl_files/<suite>/``), else ``None``.
        task: the BDDL file stem (a LIBERO task name), else ``problem_info["problem_name"]``
            (AVBR's robosuite files: the environment name), else ``None``.
        task_id: ``avbr_task_id`` (AVBR files) or ``None``.
        alignment: the stored alignment (:func:`detect_alignment`).
        image_convention: ``macros_image_convention`` (missing = ``"opengl"``).
        demos: ``demo_<i>`` keys in numeric order.
    """

    path: str
    language: str
    suite: str | None
    task: str | None
    task_id: int | None
    alignment: str
    image_convention: str
    demos: tuple[str, ...]


@dataclass
class Demo:
    """One demo, aligned (observation ``t`` is the one before ``actions[t]``) and filtered.

    Attributes:
        key: ``demo_<i>``.
        images: reader camera name (:data:`CAMERAS`) -> ``uint8 [T, H, W, 3]`` policy frames.
        state: ``float32 [T, 8]`` proprio (eef pos, eef axis-angle, gripper qpos; the layout of
            :func:`avbr.envs.observations.proprio_state`), ``None`` if the file lacks it.
        obs: every other ``obs/*`` dataset at the aligned steps, as stored.
        actions: ``float64 [T, 7]``.
        states, robot_states, rewards, dones: at the aligned steps (``None`` if absent).
        language: the task instruction.
        init_index: AVBR files: the init state the episode started from.
        steps: ``int [T]`` stored observation rows of the aligned steps.
    """

    key: str
    images: dict[str, np.ndarray]
    state: np.ndarray | None
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    states: np.ndarray | None
    robot_states: np.ndarray | None
    rewards: np.ndarray | None
    dones: np.ndarray | None
    language: str
    init_index: int | None
    steps: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int64))


@contextmanager
def _reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn h5py's errors while reading ``what`` into a :class:`DemoFileError` naming the file."""
    try:
        yield
    except DemoFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DemoFileError(path, f"cannot read {what} ({type(e).__name__}: {e}); the file is corrupt or "
                                  "truncated: download or generate it again") from e


class DemoFile:
    """An open demo file (use as a context manager).

    Raises :class:`DemoFileError` naming the file when it is not a readable hdf5 file, lacks the
    ``data`` group, or a dataset cannot be read (truncated/corrupt).

    Args:
        path: a LIBERO-layout (official or AVBR) or robomimic hdf5 file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with _reading(self.path, "the file"):
            self.file = h5py.File(self.path, "r")
        try:
            with _reading(self.path, "the data group"):
                if "data" not in self.file:
                    raise DemoFileError(self.path, "no 'data' group: not the LIBERO/robomimic demo layout")
                self.data = self.file["data"]
                self.info = self._info()
        except DemoFileError:
            self.file.close()
            raise

    def __enter__(self) -> DemoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the hdf5 file."""
        self.file.close()

    def _info(self) -> DemoFileInfo:
        attrs = self.data.attrs
        info: dict[str, Any] = {}
        if "problem_info" in attrs:
            try:
                info = json.loads(_text(attrs["problem_info"]))
            except ValueError as e:
                raise DemoFileError(self.path, f"data.attrs['problem_info'] is not JSON ({e})") from e
        bddl = Path(_text(attrs.get("bddl_file_name", "")))
        has_bddl = bddl.suffix == ".bddl"
        suite = _text(attrs["avbr_suite"]) if "avbr_suite" in attrs else (bddl.parent.name if has_bddl else None)
        task = bddl.stem if has_bddl else info.get("problem_name")
        keys = [k for k in self.data.keys() if k.startswith("demo_")]
        return DemoFileInfo(
            path=str(self.path), language=str(info.get("language_instruction", "")).strip(), suite=suite or None,
            task=task, task_id=int(attrs["avbr_task_id"]) if "avbr_task_id" in attrs else None,
            alignment=detect_alignment(attrs),
            image_convention=_text(attrs.get("macros_image_convention", IMAGE_CONVENTION)),
            demos=tuple(sorted(keys, key=lambda k: int(k.split("_")[1]) if k.split("_")[1].isdigit() else -1)))

    def _group(self, key: str) -> h5py.Group:
        if key not in self.info.demos:
            raise DemoFileError(self.path, f"no demo {key!r}; it has {len(self.info.demos)} demos")
        return self.data[key]

    def camera_key(self, key: str, camera: str) -> str:
        """The ``obs/`` dataset of ``camera`` (a :data:`CAMERAS` name, or a dataset name) in demo ``key``."""
        with _reading(self.path, f"{key}/obs"):
            have = list(self._group(key)["obs"].keys())
        for name in CAMERAS.get(camera, (camera,)):
            if name in have:
                return name
        raise DemoFileError(self.path, f"{key}/obs has no camera {camera!r}; it has {have}")

    def steps(self, key: str, options: DemoReadOptions) -> tuple[np.ndarray, np.ndarray]:
        """Stored rows of the aligned, filtered steps of demo ``key``: ``(obs rows, action rows)``,
        both ``int [T]``; observation row ``obs[t]`` is the one before action row ``act[t]``."""
        with _reading(self.path, f"{key}/actions"):
            actions = self._group(key)["actions"][()]
        alignment = self.info.alignment if options.alignment == "auto" else options.alignment
        if alignment not in ALIGNMENTS:
            raise DemoFileError(self.path, f"unknown {ALIGNMENT_ATTR} {alignment!r}; known: {sorted(ALIGNMENTS)}")
        obs_rows, act_rows = ALIGNMENTS[alignment](len(actions))
        if options.drop_noops:
            keep = keep_non_noops(actions[act_rows])
            obs_rows, act_rows = obs_rows[keep], act_rows[keep]
        return obs_rows, act_rows

    def frames(self, key: str, camera: str, rows: np.ndarray | int, options: DemoReadOptions) -> np.ndarray:
        """Policy frames of ``camera`` at stored observation ``rows``: ``uint8 [len(rows), H, W, 3]``
        (or ``[H, W, 3]`` for one int row)."""
        name = self.camera_key(key, camera)
        with _reading(self.path, f"{key}/obs/{name}"):
            dataset = self._group(key)["obs"][name]
            if isinstance(rows, (int, np.integer)):
                stored = dataset[int(rows)]
            else:
                rows = np.asarray(rows)
                stored = dataset[()][rows] if len(rows) else dataset[()][:0]
        if stored.dtype != np.uint8 or stored.shape[-1] != 3:
            raise DemoFileError(self.path, f"{key}/obs/{name}: expected uint8 [..., H, W, 3], got "
                                           f"{stored.dtype} {stored.shape}")
        if self.info.image_convention == "opencv":  # robosuite's upright [::-1] -> as rendered
            stored = stored[..., ::-1, :, :]
        return observations.policy_frames(stored, options.flip_images)

    def read(self, key: str, options: DemoReadOptions, cameras: tuple[str, ...] | None = None) -> Demo:
        """One demo, aligned and filtered (:class:`Demo`).

        Args:
            key: ``demo_<i>``.
            options: reading options.
            cameras: reader camera names to load (``None`` = those present of :data:`CAMERAS`).
        """
        obs_rows, act_rows = self.steps(key, options)
        group = self._group(key)
        with _reading(self.path, f"{key}/obs"):
            obs_names = list(group["obs"].keys())
        if cameras is None:
            cameras = tuple(c for c, names in CAMERAS.items() if any(n in obs_names for n in names))
        images = {c: self.frames(key, c, obs_rows, options) for c in cameras}
        image_names = {n for names in CAMERAS.values() for n in names}

        def rows(dataset: h5py.Dataset, at: np.ndarray) -> np.ndarray:
            return dataset[()][at]

        with _reading(self.path, f"{key} arrays"):
            obs = {n: rows(group["obs"][n], obs_rows) for n in obs_names if n not in image_names}
            at_action = {n: rows(group[n], act_rows) if n in group else None
                         for n in ("actions", "states", "rewards", "dones")}
            robot_states = rows(group["robot_states"], obs_rows) if "robot_states" in group else None
            init_index = int(group.attrs["avbr_init_index"]) if "avbr_init_index" in group.attrs else None
        return Demo(key=key, images=images, state=proprio(obs), obs=obs, actions=at_action["actions"],
                    states=at_action["states"], robot_states=robot_states, rewards=at_action["rewards"],
                    dones=at_action["dones"], language=self.info.language, init_index=init_index, steps=obs_rows)


def proprio(obs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The 8-D proprio ``float32 [T, 8]`` from a demo's ``obs`` arrays (LIBERO ``ee_states`` +
    ``gripper_states``, or robomimic ``robot0_eef_pos/quat`` + ``robot0_gripper_qpos``)."""
    if "ee_states" in obs and "gripper_states" in obs:
        return np.concatenate([obs["ee_states"], obs["gripper_states"]], axis=1).astype(np.float32)
    if all(k in obs for k in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")):
        axis_angle = np.stack([observations.quat_to_axis_angle(q) for q in obs["robot0_eef_quat"]]).reshape(-1, 3)
        parts = [obs["robot0_eef_pos"], axis_angle, obs["robot0_gripper_qpos"]]
        return np.concatenate(parts, axis=1).astype(np.float32)
    return None


def demo_keys(path: str | Path) -> list[str]:
    """``demo_<i>`` names in a file, in numeric order."""
    with DemoFile(path) as f:
        return list(f.info.demos)


def read_demo(path: str | Path, key: str, options: DemoReadOptions | None = None,
              cameras: tuple[str, ...] | None = None) -> Demo:
    """:meth:`DemoFile.read` on one demo of ``path`` (default options)."""
    with DemoFile(path) as f:
        return f.read(key, options or DemoReadOptions(), cameras)


def check_task(info: DemoFileInfo, suite: str, task_name: str, task_id: int | None = None) -> None:
    """Refuse a file whose own ``problem_info``/BDDL (or AVBR attributes) name another suite or task.

    What the file does not say is not checked (robomimic files name no task).

    Raises:
        DemoTaskMismatchError: naming the file, what it holds and what is evaluated.
    """
    wrong = []
    if info.suite is not None and info.suite != suite:
        wrong.append(f"suite {info.suite!r}, not {suite!r}")
    if info.task is not None and info.task != task_name:
        wrong.append(f"task {info.task!r}, not {task_name!r}")
    elif info.task is None and task_id is not None and info.task_id is not None and info.task_id != task_id:
        wrong.append(f"task id {info.task_id}, not {task_id}")
    if wrong:
        raise DemoTaskMismatchError(
            info.path, f"it holds demos of {' and '.join(wrong)} (evaluated: {suite} task "
                       f"{task_name!r}); training on another task's demos is refused. Put the right file at "
                       f"<demos.dir>/{suite}/{task_name}_demo.hdf5")


class DemoWriter:
    """Append successful episodes of one task to a LIBERO-layout hdf5 file.

    The file records ``avbr_obs_alignment = "obs_before_action"``: each step holds the observation
    and state *before* its action (:func:`avbr.envs.worker.demo_step`), unlike the official files.

    Args:
        path: output file (parent folders are created; an existing file is replaced).
        suite: suite name, stored as ``data.avbr_suite``.
        task_id: task index, stored as ``data.avbr_task_id``.
    """

    def __init__(self, path: str | Path, suite: str, task_id: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.path, "w")
        self.data = self.file.create_group("data")
        self.data.attrs["avbr_suite"] = suite
        self.data.attrs["avbr_task_id"] = task_id
        self.data.attrs["macros_image_convention"] = IMAGE_CONVENTION
        self.data.attrs[ALIGNMENT_ATTR] = "obs_before_action"
        self.num_demos = 0
        self.total = 0

    def add(self, record: EpisodeRecord) -> None:
        """Write one successful, recorded episode as ``demo_<n>``."""
        if not record.success or record.data is None:
            raise ValueError("only successful episodes recorded with record=True can be written")
        data = record.data
        missing = [k for k in OBS_KEYS + STEP_KEYS if k not in data]
        if missing:
            raise ValueError(f"episode data lacks {missing}; record demos with SuiteConfig.render=True")
        if self.num_demos == 0:
            attrs = data["attrs"]
            env_args = json.loads(attrs["env_args"])
            self.data.attrs["env_name"] = env_args["env_name"]
            self.data.attrs["env_args"] = attrs["env_args"]
            self.data.attrs["problem_info"] = attrs["problem_info"]
            self.data.attrs["bddl_file_name"] = attrs["bddl_file_name"]
            bddl = Path(attrs["bddl_file_name"]) if attrs["bddl_file_name"] else None
            self.data.attrs["bddl_file_content"] = bddl.read_text() if bddl and bddl.is_file() else ""
        group = self.data.create_group(f"demo_{self.num_demos}")
        obs = group.create_group("obs")
        for key in OBS_KEYS:
            obs.create_dataset(key, data=data[key])
        obs.create_dataset("ee_pos", data=data["ee_states"][:, :3])
        obs.create_dataset("ee_ori", data=data["ee_states"][:, 3:])
        for key in STEP_KEYS:
            group.create_dataset(key, data=data[key])
        steps = len(data["actions"])
        flags = np.zeros(steps, dtype=np.uint8)
        flags[-1] = 1
        group.create_dataset("rewards", data=flags)
        group.create_dataset("dones", data=flags)
        group.attrs["num_samples"] = steps
        group.attrs["init_state"] = data["states"][0]
        group.attrs["model_file"] = data["model_file"]
        group.attrs["avbr_init_index"] = record.init_index
        group.attrs["init_source"] = record.init_source
        group.attrs["init_seed"] = record.init_index
        if data.get("init_scene_state") is not None:
            group.attrs["init_scene_state"] = data["init_scene_state"]
        self.num_demos += 1
        self.total += steps

    def close(self) -> None:
        """Write ``num_demos``/``total`` and close the file."""
        self.data.attrs["num_demos"] = self.num_demos
        self.data.attrs["total"] = self.total
        self.file.close()
