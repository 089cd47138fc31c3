"""Representation probes of seeds 001/002 for several encoders: a Hydra app.

    python eval/probes.py data.root=/tmp/demos/libero_spatial output_dir=/tmp/avbr_probes/rep
    python eval/probes.py 'tasks=[flow]' encoders.dinov2_random.arch=base

Tasks (``avbr.eval.probing.rep_probes.PROBE_TASKS``): temporal_order, flow, clustering, spatial_position,
spatial_relation. Writes ``config.yaml``, ``results.json`` (schema ``avbr.probes``), ``report.md``
and the plots (t-SNE per encoder, flow error maps) into ``output_dir``.
"""

import os
import sys

# Run by path, eval/ would be first on sys.path and shadow installed packages: drop it first.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import logging  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from avbr.cli import entry_point  # noqa: E402
from avbr.eval.probing.records import write_record  # noqa: E402
from avbr.provenance import code_provenance, describe_commit  # noqa: E402
from avbr.eval.probing.rep_report import ProbesConfig, probes_report, run_probes  # noqa: E402

log = logging.getLogger("probes")
ConfigStore.instance().store(name="probes_schema", node=ProbesConfig)


@entry_point
@hydra.main(version_base=None, config_path="pkg://avbr.configs", config_name="probes")
def main(cfg: DictConfig) -> None:
    typed: ProbesConfig = OmegaConf.to_object(cfg)
    out_dir = typed.output_dir or HydraConfig.get().runtime.output_dir
    log.info("code %s; config:\n%s", describe_commit(code_provenance()), OmegaConf.to_yaml(cfg))
    results = run_probes(typed, out_dir)
    path = write_record(out_dir, "probes", OmegaConf.to_container(cfg, resolve=True), results,
                        probes_report(results, typed), OmegaConf.to_yaml(cfg, resolve=True))
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
