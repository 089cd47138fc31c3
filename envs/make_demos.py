"""Write scripted-expert demonstrations in the official LIBERO hdf5 layout.

Usage (Hydra; ``suite`` picks ``configs/suite/<name>.yaml``)::

    python -m avbr.envs.make_demos suite=robosuite_lift n_per_task=50 workers=2 out=demos
    python -m avbr.envs.make_demos suite=libero_object n_per_task=50 workers=2 out=demos \\
        suite.camera_size=128 'tasks=[0,3]'
    python -m avbr.envs.make_demos suite=libero_object n_per_task=50 out=demos format=lerobot

Demos start from held-out scenes, never from the benchmark's evaluation init states
(:mod:`avbr.envs.scenes`): episode ``j`` of each task draws its scene with the suite's own
placement sampler seeded with ``seed_offset + j`` (``seed_offset >= 1_000_000``, a range evaluation
never uses; LIBERO scenes are also compared with the task's 50 init states, and a seed that
reproduces one is skipped and counted as a collision). Each demo records ``init_source`` and
``init_seed``. Only successful episodes are written, to ``<out>/<suite>/<task name>_demo.hdf5``
(layout: :mod:`avbr.envs.demos`). Each task's expert success rate is printed and saved with the
merged config in ``<out>/<suite>/summary.json`` and ``config.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from avbr.cli import ConfigError, entry_point
from avbr.data.lerobot_writer import LeRobotWriter
from avbr.envs.config import EpisodeRecord, EpisodeSpec, SuiteConfig, register_suite_schema, suite_config_from
from avbr.envs.demos import DemoWriter
from avbr.envs.registry import list_tasks
from avbr.envs.scenes import HELDOUT_SEED, HELDOUT_SEED_BASE, check_source
from avbr.envs.vector import run_expert_episodes
from avbr.progress import finish, per_hour, progress_bar


@dataclass
class MakeDemosConfig:
    """Options of ``make_demos``.

    Attributes:
        suite: the suite and its protocol (Hydra group ``suite``).
        n_per_task: episodes attempted per task (successful ones are written).
        workers: simulator worker processes.
        out: output folder; files go to ``<out>/<suite name>/``.
        tasks: task ids (``None`` = every task of the suite).
        format: ``hdf5`` (one LIBERO-layout file per task) or ``lerobot`` (one LeRobotDataset
            v3.0 for the suite in ``<out>/<suite>/lerobot``, :mod:`avbr.data.lerobot_writer`).
        seed_offset: episode ``j`` uses held-out seed ``seed_offset + j`` (at least
            ``avbr.envs.scenes.HELDOUT_SEED_BASE``).
        progress: show a progress bar (tqdm, on stderr).
    """

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"suite": "robosuite_lift"}])
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    n_per_task: int = 50
    workers: int = 2
    out: str = "outputs/demos"
    tasks: list[int] | None = None
    format: str = "hdf5"
    seed_offset: int = HELDOUT_SEED_BASE
    progress: bool = True


register_suite_schema()
ConfigStore.instance().store(name="make_demos_schema", node=MakeDemosConfig)


def heldout_specs(task_ids: list[int], n_per_task: int, seed_offset: int) -> list[EpisodeSpec]:
    """Episode ``j`` of task ``i``: the held-out scene of seed ``seed_offset + j``."""
    check_source(HELDOUT_SEED, seed_offset)
    return [EpisodeSpec(task_id=t, init_index=seed_offset + j, episode=j, source=HELDOUT_SEED)
            for t in task_ids for j in range(n_per_task)]


def make_demos(cfg: MakeDemosConfig | Any) -> dict[str, Any]:
    """Run the experts and write the demo files; returns the per-task summary."""
    suite = cfg.suite if isinstance(cfg.suite, SuiteConfig) else suite_config_from(cfg.suite)
    if not suite.render:
        raise ConfigError("demo files need camera images: set suite.render=true")
    out_dir = Path(cfg.out) / suite.name
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = {t.task_id: t for t in list_tasks(suite)}
    task_ids = list(cfg.tasks) if cfg.tasks is not None else sorted(tasks)
    unknown = [t for t in task_ids if t not in tasks]
    if unknown:
        raise ConfigError(f"suite {suite.name!r} has no task ids {unknown}; valid: 0..{len(tasks) - 1}; "
                          "set tasks=[...] to ids in that range, or tasks=null for all")
    if cfg.format not in ("hdf5", "lerobot"):
        raise ConfigError(f"format must be 'hdf5' or 'lerobot', got {cfg.format!r}")
    if cfg.format == "lerobot":  # one dataset holds every task (the task is per episode)
        shared = LeRobotWriter(out_dir / "lerobot", fps=suite.control_freq)
        writers = {t: shared for t in task_ids}
    else:
        writers = {t: DemoWriter(out_dir / f"{tasks[t].name}_demo.hdf5", suite.name, t) for t in task_ids}
    counts = {t: {"attempted": 0, "written": 0, "collisions": 0, "errors": []} for t in task_ids}
    specs = heldout_specs(task_ids, cfg.n_per_task, cfg.seed_offset)
    bar = progress_bar(total=len(specs), desc=f"make_demos {suite.name}", unit="ep", enabled=cfg.progress)

    def on_episode(record: EpisodeRecord) -> None:
        counts[record.task_id]["attempted"] += 1
        if record.success:
            writers[record.task_id].add(record)
            counts[record.task_id]["written"] += 1
        elif record.error:
            counts[record.task_id]["collisions"] += "SceneCollision" in record.error
            counts[record.task_id]["errors"].append(record.error.strip().splitlines()[-1])
        record.data = None
        bar.update(1)
        bar.set_postfix_str(f"successes {sum(c['written'] for c in counts.values())}, "
                            f"{per_hour(sum(c['attempted'] for c in counts.values()), bar.start_t):.0f} ep/h")

    try:
        run_expert_episodes(suite, workers=cfg.workers, record=True, episodes=specs, on_episode=on_episode)
    finally:
        bar.close()
        for writer in {id(w): w for w in writers.values()}.values():
            writer.close()
    done, written = sum(c["attempted"] for c in counts.values()), sum(c["written"] for c in counts.values())
    finish(bar, f"{done} episodes, {written} successes written ({written / max(done, 1):.0%})")
    summary = {"suite": suite.name, "n_per_task": cfg.n_per_task, "init_source": HELDOUT_SEED,
               "seeds": [cfg.seed_offset, cfg.seed_offset + cfg.n_per_task - 1], "tasks": []}
    for t in task_ids:
        c = counts[t]
        rate = c["written"] / max(c["attempted"], 1)
        print(f"{suite.name} task {t} ({tasks[t].name}): expert success {c['written']}/{c['attempted']} "
              f"= {rate:.0%} -> {writers[t].path}", flush=True)
        summary["tasks"].append({"task_id": t, "name": tasks[t].name, "file": str(writers[t].path),
                                 "attempted": c["attempted"], "written": c["written"],
                                 "collisions": c["collisions"], "success_rate": rate,
                                 "errors": sorted(set(c["errors"]))})
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg if OmegaConf.is_config(cfg) else OmegaConf.structured(cfg)))
    return summary


@entry_point
@hydra.main(version_base="1.3", config_path="pkg://avbr.configs", config_name="make_demos_schema")
def main(cfg: Any) -> None:
    """Hydra entry point."""
    make_demos(cfg)


if __name__ == "__main__":
    main()
