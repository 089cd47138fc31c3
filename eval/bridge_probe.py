"""Action probing on Bridge V2 (raw layout), LIBERO hdf5 or precomputed features: a Hydra app.

    python eval/bridge_probe.py data.root=/data/bridge/raw encoder.name=dinov2_hf encoder.source=facebook/dinov2-small
    python eval/bridge_probe.py data.source=hdf5_demos data.root=/tmp/demos output_dir=/tmp/avbr_probes/bridge
    python eval/bridge_probe.py features=feats.npz output_dir=/tmp/out

Writes ``config.yaml``, ``results.json`` (schema ``avbr.bridge_probe``) and ``report.md`` into
``output_dir`` (default: Hydra's run directory). The protocol is in ``avbr.eval.probing.action_probe``.
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
from avbr.eval.probing.action_probe import ActionProbeConfig, action_report, run_action_probe  # noqa: E402
from avbr.eval.probing.records import write_record  # noqa: E402
from avbr.provenance import code_provenance, describe_commit  # noqa: E402

log = logging.getLogger("bridge_probe")
ConfigStore.instance().store(name="action_probe_schema", node=ActionProbeConfig)


@entry_point
@hydra.main(version_base=None, config_path="pkg://avbr.configs", config_name="bridge_probe")
def main(cfg: DictConfig) -> None:
    typed: ActionProbeConfig = OmegaConf.to_object(cfg)
    out_dir = typed.output_dir or HydraConfig.get().runtime.output_dir
    log.info("code %s; config:\n%s", describe_commit(code_provenance()), OmegaConf.to_yaml(cfg))
    results = run_action_probe(typed)
    title = os.path.basename(typed.features) if typed.features else f"{typed.encoder.name} on {typed.data.source}"
    path = write_record(out_dir, "bridge_probe", OmegaConf.to_container(cfg, resolve=True), results,
                        action_report(results, title), OmegaConf.to_yaml(cfg, resolve=True))
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
