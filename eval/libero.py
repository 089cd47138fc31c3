"""Evaluate an encoder on LIBERO or robosuite: demos -> frozen features -> policy head -> rollouts.

    python eval/libero.py encoder=two_stream suite=libero_object
    python eval/libero.py encoder=dinov2_hf suite=robosuite_lift episodes_per_task=50 'seeds=[0,1]'
    python eval/libero.py --help

Writes ``results.json`` (Wilson 95% intervals, per-episode records), ``results.csv``,
``summary.md``, rollout videos and an offline W&B run into ``out_dir``; running the same command
again resumes. Configuration: ``configs/libero.yaml`` (schema ``avbr.eval.rollouts.evaluate.EvalConfig``).
"""

import os
import sys

# Run by path, eval/ comes first on sys.path, and `import libero` (the LIBERO package) would import
# this very file: drop the script's folder before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

import avbr.adapters  # noqa: E402,F401 - stores the encoder group's schema (encoder/schema)
from avbr.cli import entry_point  # noqa: E402
from avbr.envs.config import register_suite_schema  # noqa: E402
from avbr.eval.rollouts.evaluate import EvalConfig, evaluate  # noqa: E402
from avbr.provenance import code_provenance, describe_commit  # noqa: E402

register_suite_schema()
ConfigStore.instance().store(name="libero_schema", node=EvalConfig)


@entry_point
@hydra.main(version_base="1.3", config_path="pkg://avbr.configs", config_name="libero")
def main(cfg: DictConfig) -> None:
    """Log the config and git state, then run (or resume) the evaluation in Hydra's run dir."""
    print(f"[eval] code {describe_commit(code_provenance())}\n{OmegaConf.to_yaml(cfg, resolve=True)}", flush=True)
    evaluate(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
