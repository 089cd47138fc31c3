"""Library side of ``eval/libero.py``: demos -> frozen features -> policy head -> rollouts -> results.

:class:`EvalConfig` is the Hydra schema of ``configs/libero.yaml``; :func:`evaluate` runs one
evaluation into an output folder and is resumable: per-episode results go to ``episodes.jsonl``
as episodes finish and each seed's trained head is saved, so running the same command again after
a crash trains nothing, skips finished episodes and ends with the same ``results.json``.

Output folder::

    config.yaml            resolved config              results.json / results.csv / summary.md
    episodes.jsonl         per-episode log (resume)     timing.json (throughput, time by stage)
    policy/seed<s>.*       trained head + selection     videos/task<i>_ep<j>_seed<s>_<outcome>.mp4
    run_fingerprint.json   guards resuming into a different run
    rollout_features/      (save_rollout_features) features of every planning step per episode
    wandb/                 offline W&B run
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from avbr.cli import ConfigError, ResumeMismatchError, UserError
from avbr.envs import EpisodeRecord, EpisodeSpec, SuiteConfig, VectorEnv, episode_specs, list_tasks, run_episodes
from avbr.envs.config import suite_config_from
from avbr.envs.renderer import resolve_workers
from avbr.eval.rollouts.policies import PolicyConfig, TrainedPolicy, train_policy
from avbr.envs.scenes import HELDOUT_SEED_BASE
from avbr.eval.rollouts.demo_supply import ensure_demos, find_demos
from avbr.eval.rollouts.encoder_source import EncoderSourceError, resolve_encoder_source
from avbr.eval.rollouts.heldout import check_heldout
from avbr.eval.rollouts.policy_data import DemoConfig, DemosNotFoundError, FeatureSpec, load_demos
from avbr.progress import finish, note, per_hour, progress_bar
from avbr.provenance import code_provenance
from avbr.eval.rollouts.results import (CRASH_LIMIT, EpisodeLog, EpisodeResult, build_results, summary_markdown,
                               validate_results, write_csv)
from avbr.eval.rollouts.outputs import OptionalOutputs, write_results
from avbr.eval.rollouts.rollout import EncoderPolicy
from avbr.eval.rollouts.shards import ShardConfig, shard_keys
from avbr.eval.rollouts.videos import check_video_writer, video_name, write_video


@dataclass
class WandbConfig:
    """W&B logging.

    Attributes:
        mode: ``offline`` (default: logs under ``<out>/wandb``, sync later with ``wandb sync``),
            ``online`` or ``disabled`` (tests).
        project: W&B project name.
    """

    mode: str = "offline"
    project: str = "avbr-eval"

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb.mode must be offline, online or disabled, got {self.mode!r}")


@dataclass
class EvalConfig:
    """Schema of ``configs/libero.yaml`` (the ``eval/libero.py`` app).

    Attributes:
        encoder: the ``encoder`` config group (schema ``avbr.adapters.EncoderConfig``).
        suite: the ``suite`` config group (schema ``avbr.envs.SuiteConfig``).
        policy: the ``policy`` config group (schema :class:`avbr.eval.rollouts.policies.PolicyConfig`).
        demos: where the demonstrations are and the feature cache.
        readout: ``avbr.adapters.readouts.READOUTS`` name turning encoder ``Features`` into the
            policy input (``cls``, ``mean``, ``A``-``D``; token readouts are flattened).
        cameras: cameras encoded and concatenated (``agentview``, ``wrist``).
        gap: ``k`` of the ``(o_{t-k}, o_t)`` frame pair (demos and rollouts alike).
        tasks: task ids to evaluate (``None`` = every task of the suite).
        episodes_per_task: episodes per task and seed; episode ``j`` starts from init state
            ``suite.init_state_offset + j`` (LIBERO protocol: 50, one per init state).
        seeds: evaluation seeds; each seeds its own policy head (split, init, batch order) and
            rolls out the same init states.
        encoder_seed: torch seed set before building the encoder (random-init controls).
        workers: parallel simulator processes, or ``auto``: one per core this process may use
            (:func:`avbr.envs.renderer.resolve_workers`; on a GPU host each renders on a GPU).
        videos_per_task: MP4s of the first this-many episodes of each task and seed.
        save_rollout_features: keep the features of every planning step of every episode in
            ``rollout_features/`` (for later probing).
        encode_batch_size: frames per encoder forward.
        torch_threads: ``torch.set_num_threads`` in the main process (``None`` = torch default).
        dry_run: print the tasks, the episode plan and where the demos are, then stop (no
            encoder, training or simulation).
        shard: run only shard ``index`` of ``count`` of the episode plan
            (:mod:`avbr.eval.rollouts.shards`; give each shard its own ``out_dir``, then merge the
            folders with ``eval/merge.py``).
        out_dir: output folder (Hydra's run dir); re-running with the same folder resumes.
        wandb: W&B settings.
    """

    encoder: Any = None
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    readout: str = "cls"
    cameras: list[str] = field(default_factory=lambda: ["agentview"])
    gap: int = 1
    tasks: list[int] | None = None
    episodes_per_task: int = 50
    seeds: list[int] = field(default_factory=lambda: [0])
    encoder_seed: int = 0
    workers: Any = 2
    videos_per_task: int = 2
    save_rollout_features: bool = False
    encode_batch_size: int = 64
    torch_threads: int | None = None
    dry_run: bool = False
    shard: ShardConfig = field(default_factory=ShardConfig)
    out_dir: str = "outputs/eval/${suite.name}/${hydra:runtime.choices.encoder}-${policy.name}"
    wandb: WandbConfig = field(default_factory=WandbConfig)


#: Settings that may change between a run and its resumption (they do not change any number).
_RESUME_FREE = ("workers", "out_dir", "wandb", "torch_threads", "encode_batch_size", "episodes_per_task",
                "seeds", "videos_per_task", "save_rollout_features", "dry_run")


class TooManyCrashesError(UserError, RuntimeError):
    """More than :data:`~avbr.eval.rollouts.results.CRASH_LIMIT` of the episodes crashed."""


def _check_crashes(crashed: list[EpisodeResult], planned: int) -> None:
    """Stop when more than :data:`CRASH_LIMIT` of the ``planned`` episodes are in ``crashed``."""
    if len(crashed) > CRASH_LIMIT * planned:
        last = (crashed[-1].error or "").strip().splitlines()
        raise TooManyCrashesError(
            f"{len(crashed)} of {planned} episodes crashed (simulator exception or dead worker; more than "
            f"{CRASH_LIMIT:.0%}): the infrastructure, not the policy, is failing, so the run stops. Last reason: "
            f"{last[-1] if last else '?'}. Fix the cause and run the same command again: finished episodes are "
            f"kept, crashed ones are retried.")


def _fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in config.items() if k not in _RESUME_FREE}
    kept["demos"] = {k: v for k, v in kept.get("demos", {}).items()
                     if k not in ("cache_dir", "generate", "generate_per_task", "allow_eval_scenes")}
    kept["encoder"] = {k: v for k, v in (kept.get("encoder") or {}).items() if k != "device"}
    return kept


def _check_resume(out: Path, config: dict[str, Any]) -> None:
    path = out / "run_fingerprint.json"
    current = _fingerprint(config)
    if path.exists():
        old = json.loads(path.read_text())
        if old != current:
            diff = sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k))
            raise ResumeMismatchError(
                f"{out} holds an evaluation with a different config (differs in: {', '.join(diff)}). "
                f"Resume with the same settings, or choose a new folder with out_dir=...")
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


def _build_encoder(encoder_cfg: dict[str, Any], seed: int) -> Any:
    from avbr.adapters import EncoderConfig, build_encoder  # noqa: PLC0415 - heavy

    torch.manual_seed(seed)
    return build_encoder(EncoderConfig(**encoder_cfg))


class _Wandb:
    """A thin W&B run (no-op when disabled)."""

    def __init__(self, cfg: WandbConfig, out: Path, config: dict[str, Any], name: str) -> None:
        self.run = None
        if cfg.mode != "disabled":
            import wandb  # noqa: PLC0415

            self.run = wandb.init(project=cfg.project, mode=cfg.mode, dir=str(out), config=config, name=name)

    def log(self, data: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(data)

    def finish(self, summary: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(summary)
            self.run.finish()


def evaluate(cfg: Any, out_dir: str | Path) -> dict[str, Any] | None:
    """Run (or resume) one evaluation; returns the validated ``results.json`` dict (``None`` for
    ``dry_run``).

    Inputs are validated before anything is written to ``out_dir``: the encoder weights
    (:mod:`avbr.eval.rollouts.encoder_source`), the demo files (generated when missing,
    :mod:`avbr.eval.rollouts.demo_supply`) and the held-out check of their scenes
    (:mod:`avbr.eval.rollouts.heldout`).

    Args:
        cfg: an :class:`EvalConfig`-shaped OmegaConf node (or dataclass).
        out_dir: output folder.

    Raises:
        EncoderSourceError: ``encoder.source`` unset and no pretraining export to use.
        DemosNotFoundError: demos missing and not generated.
        EvalScenesInDemosError: demos start from the evaluation's init states.
        TooManyCrashesError: more than 10% of the planned episodes crashed.
    """
    config = OmegaConf.to_container(OmegaConf.structured(cfg) if not OmegaConf.is_config(cfg) else cfg,
                                    resolve=True)
    suite = suite_config_from(config["suite"])
    policy_cfg = PolicyConfig(**config["policy"])
    demo_cfg = DemoConfig(**config["demos"])
    spec = FeatureSpec(readout=config["readout"], cameras=tuple(config["cameras"]), gap=config["gap"])
    wandb_cfg = WandbConfig(**config["wandb"])
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    all_tasks = {t.task_id: t for t in list_tasks(suite)}
    task_ids = sorted(all_tasks) if config["tasks"] is None else list(config["tasks"])
    unknown = [t for t in task_ids if t not in all_tasks]
    if unknown:
        raise ConfigError(f"suite {suite.name!r} has no task ids {unknown}; valid: 0..{len(all_tasks) - 1}; "
                          "set tasks=[...] to ids in that range, or tasks=null for all")
    tasks = [all_tasks[t] for t in task_ids]
    eval_indices = [suite.init_state_offset + j for j in range(config["episodes_per_task"])]
    if eval_indices and eval_indices[-1] >= HELDOUT_SEED_BASE:
        raise ValueError(f"evaluation init states reach {eval_indices[-1]}, but indices from {HELDOUT_SEED_BASE} on "
                         f"are held-out demo seeds: lower suite.init_state_offset or episodes_per_task")
    if config["dry_run"]:
        for t in tasks:
            print(f"[dry run] {suite.name} task {t.task_id}: {t.language} ({t.num_init_states or 'any'} init states)")
        print(f"[dry run] {config['episodes_per_task']} episode(s) per task x seeds {config['seeds']}, "
              f"init states from {suite.init_state_offset}, out_dir {out_dir}")
        shard = config["shard"]
        if shard["count"] > 1:
            mine = sorted(shard_keys([(s, t.task_id, j) for s in config["seeds"] for t in tasks
                                      for j in range(config["episodes_per_task"])], shard["index"], shard["count"]))
            print(f"[dry run] shard {shard['index']}/{shard['count']}: {len(mine)} episode(s) (seed, task, episode): "
                  f"{mine[:8]}{' ...' if len(mine) > 8 else ''}")
        try:
            for task_id, demos in find_demos(demo_cfg, suite, tasks).items():
                print(f"[dry run] demos of task {task_id}: {demos.path} ({demos.label})")
        except DemosNotFoundError as exc:
            print(f"[dry run] {exc}")
        try:
            print(f"[dry run] encoder weights: {resolve_encoder_source(config['encoder'])[1]['source']}")
        except EncoderSourceError as exc:
            print(f"[dry run] {exc}")
        return None
    # Validate every input before anything is written, so a failed start never blocks the
    # corrected command (the resume fingerprint is written only after this).
    encoder_cfg, encoder_source = resolve_encoder_source(config["encoder"])
    config["encoder"]["source"] = encoder_source["source"]  # resolved weights: fingerprint and results
    if config["videos_per_task"] > 0:  # a broken video setup fails here, before any simulation
        print(f"[eval] videos: {check_video_writer()} MP4 at {suite.control_freq} fps", flush=True)
    workers = resolve_workers(config["workers"])
    files = ensure_demos(demo_cfg, suite, tasks, workers)
    print(f"[eval] checking the demos' first scenes against {len(eval_indices)} evaluation init state(s) per task",
          flush=True)
    heldout = check_heldout(suite, files, eval_indices, demo_cfg.allow_eval_scenes)
    print(f"[eval] held-out scenes: {heldout['overlapping_demos']} of {heldout['demos_checked']} demos start from an "
          f"evaluation init state (demo sources: {heldout['sources']})", flush=True)
    if heldout["unverified_demos"]:
        print(f"[eval] warning: {heldout['unverified_demos']} demo(s) record neither their first scene nor where they "
              f"started (third-party LeRobot conversions), so the held-out check cannot see them; results.json "
              f"records the count", flush=True)
    extra = {"encoder_source": encoder_source, "heldout": heldout,
             "demo_files": {str(t): {"file": demos.label, "sha256": demos.digest()} for t, demos in sorted(files.items())}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, config)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(config))
    timing: dict[str, Any] = {}

    optional = OptionalOutputs(out)

    encoder_name = config["encoder"]["name"]
    run_name = f"{suite.name}-{encoder_name}-{policy_cfg.name}"
    wb = _Wandb(wandb_cfg, out, config, run_name)
    t0 = time.perf_counter()
    encoder = _build_encoder(encoder_cfg, config["encoder_seed"])
    demos, demo_info = load_demos(demo_cfg, files, task_ids, encoder, config["encoder"], spec,
                                  suite.camera_size, config["encode_batch_size"], flip_images=suite.flip_images)
    timing["demo_features_s"] = round(time.perf_counter() - t0, 2)
    print(f"[eval] {len(demos)} demos of {len(tasks)} task(s) encoded ({demo_info['cache_hits']} file(s) from "
          f"cache), feature dim {demos[0].features.shape[1]}", flush=True)

    log = EpisodeLog(out / "episodes.jsonl")
    planned = shard_keys([(s, t, j) for s in config["seeds"] for t in task_ids for j in range(config["episodes_per_task"])],
                         config["shard"]["index"], config["shard"]["count"])
    selection: dict[str, Any] = {}
    crashed_now: list[EpisodeResult] = []  # crashes of this invocation (older ones are being retried)
    rollout_s, env_s, episodes_run = 0.0, 0.0, 0
    timers: dict[str, Any] = {}
    for seed in config["seeds"]:
        head_path = out / "policy" / f"seed{seed}"
        if head_path.with_suffix(".json").exists():
            head, meta = TrainedPolicy.load(head_path)
        else:
            t1 = time.perf_counter()
            head, meta = train_policy(policy_cfg, demos, len(task_ids), seed,
                                      log=lambda row, s=seed: wb.log({f"train/seed{s}/{k}": v for k, v in row.items()}))
            head_path.parent.mkdir(parents=True, exist_ok=True)
            head.save(head_path, meta)
            timing[f"train_seed{seed}_s"] = round(time.perf_counter() - t1, 2)
        selection[str(seed)] = meta
        print(f"[eval] seed {seed}: head selected at epoch {meta['epoch']} ({meta['criterion']}, "
              f"val L1 {meta['val_loss']})", flush=True)

        specs = [s for s in episode_specs(task_ids, config["episodes_per_task"], suite.init_state_offset,
                                          min((t.num_init_states for t in tasks if t.num_init_states), default=None))
                 if (seed, s.task_id, s.episode) in planned and (seed, s.task_id, s.episode) not in log]
        if not specs:
            continue
        policy = EncoderPolicy(encoder, head, spec, task_ids, policy_cfg.n_action_steps,
                               record_features=config["save_rollout_features"],
                               batch_size=config["encode_batch_size"])
        venv = TrackingVectorEnv(suite, max(1, min(workers, len(specs))))
        bar = progress_bar(total=len(specs), desc=f"rollouts seed {seed}", unit="ep")
        tally = {"done": 0, "successes": 0}

        def on_episode(record: EpisodeRecord, s: int = seed) -> None:
            video = None
            if record.frames is not None and record.episode < config["videos_per_task"]:
                name, frames = video_name(record.task_id, record.episode, s, record.success), record.frames
                if optional.write(f"videos/{name}", lambda: write_video(frames, out / "videos" / name,
                                                                        suite.control_freq)):
                    video = name
            record.frames = None
            if config["save_rollout_features"]:
                env_id = venv.env_running(record.task_id, record.episode)
                feats = policy.pop_features(env_id)
                path = out / "rollout_features" / f"task{record.task_id:02d}_ep{record.episode:03d}_seed{s}.npz"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, **feats, success=record.success)
            result = EpisodeResult(seed=s, task_id=record.task_id, episode=record.episode,
                                   init_index=record.init_index, success=record.success, length=record.length,
                                   error=record.error, init_digest=record.init_digest, video=video,
                                   crashed=record.crashed)
            log.append(result)
            done = [e for e in log.results() if e.seed == s and not e.crashed]
            if done:
                wb.log({f"rollout/seed{s}/success_so_far": sum(e.success for e in done) / len(done)})
            tally["done"] += 1
            tally["successes"] += bool(record.success)
            bar.update(1)
            bar.set_postfix_str(f"successes {tally['successes']}/{tally['done']}, "
                                f"{per_hour(tally['done'], bar.start_t):.0f} ep/h")
            outcome = "CRASHED (infrastructure; not counted, retried on resume)" if record.crashed else (
                "success" if record.success else "failure")
            note(bar, f"[eval] seed {s} task {record.task_id} episode {record.episode}: {outcome} in {record.length} "
                      "steps" + (f" (error: {record.error.strip().splitlines()[-1]})" if record.error else ""))
            if record.crashed:
                crashed_now.append(result)
                _check_crashes(crashed_now, len(planned))

        t2 = time.perf_counter()
        try:
            run_episodes(suite, policy, episodes=specs, venv=venv, on_episode=on_episode,
                         record_frames=any(s.episode < config["videos_per_task"] for s in specs))
        finally:
            venv.close()
        finish(bar, f"{tally['done']} episodes, {tally['successes']} successes "
                    f"({tally['successes'] / max(tally['done'], 1):.0%}), {per_hour(tally['done'], bar.start_t):.0f} episodes/h")
        episodes_run += len(specs)
        env_s += venv.busy_s
        rollout_s += time.perf_counter() - t2
        timers[str(seed)] = policy.timers.as_dict()

    episodes = [e for e in log.results() if e.key in planned]
    results = build_results(episodes, suite=suite.name, encoder=encoder_name, policy=policy_cfg.name,
                            tasks={t.task_id: t.language for t in tasks}, seeds=config["seeds"],
                            config=config, provenance=code_provenance(), selection=selection,
                            extra=extra)
    validate_results(results)
    write_results(results, out / "results.json")  # with episodes.jsonl, all the run measured: first
    optional.write("results.csv", lambda: write_csv(results, out / "results.csv"), out / "results.csv")
    summary = out / "summary.md"
    if optional.write("summary.md", lambda: summary.write_text(summary_markdown(results)), summary):
        print(summary.read_text(), flush=True)
    timing.update({"episodes_run": episodes_run, "rollout_s": round(rollout_s, 2),
                   "episodes_per_hour": round(3600 * episodes_run / rollout_s, 1) if rollout_s else None,
                   "env_s": round(env_s, 2), "by_seed": timers, "demos": demo_info})
    optional.write("timing.json", lambda: (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n"),
                   out / "timing.json")
    total = results["suite_success"]
    optional.write("the W&B run summary", lambda: wb.finish({
        "success_rate": total["success_rate"], "ci95_low": total["ci95_low"],
        "ci95_high": total["ci95_high"], "episodes": total["episodes"]}))
    _check_crashes([e for e in episodes if e.crashed], len(planned))
    optional.raise_if_failed()
    return results


class TrackingVectorEnv(VectorEnv):
    """A :class:`VectorEnv` that remembers which episode each env runs and times env calls.

    ``busy_s`` is the wall time spent in ``reset``/``step`` (simulation, rendering and the
    inter-process round trip, as seen from the main process).
    """

    def __init__(self, cfg: SuiteConfig, num_envs: int) -> None:
        super().__init__(cfg, num_envs)
        self.running: dict[int, EpisodeSpec] = {}
        self.busy_s = 0.0

    def env_running(self, task_id: int, episode: int) -> int:
        """The env id whose current episode is ``(task_id, episode)``."""
        return next(i for i, s in self.running.items() if (s.task_id, s.episode) == (task_id, episode))

    def reset(self, env_ids: Any, specs: Any) -> Any:
        self.running.update(zip(env_ids, specs))
        t0 = time.perf_counter()
        out = super().reset(env_ids, specs)
        self.busy_s += time.perf_counter() - t0
        return out

    def step(self, env_ids: Any, actions: np.ndarray) -> Any:
        t0 = time.perf_counter()
        out = super().step(env_ids, actions)
        self.busy_s += time.perf_counter() - t0
        return out
