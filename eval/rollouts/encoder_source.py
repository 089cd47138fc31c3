"""Which weights an evaluation encodes with: ``encoder.source`` resolved, never a silent random init.

* ``encoder.source=<path or hub id>``: those weights.
* ``encoder.source=random``: the random-init control, labelled as such in ``results.json``,
  ``summary.md`` and the reports.
* unset (``null``) for our encoders (``avbr.models`` registry: two_stream, single_stream, ...): the
  newest encoder exported by ``python -m avbr.train`` (``<run>/encoder``, newest ``encoder.json``)
  whose ``encoder.json`` names the same model, under pretraining's default output folder (the
  part of ``configs/pretrain/config.yaml``'s ``train.output_dir`` before its first ``${``,
  relative to the working directory). None there: :class:`EncoderSourceError` with the
  pretraining command. Unset for any other encoder is an error too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: ``encoder.source`` value asking for random weights.
RANDOM = "random"


class EncoderSourceError(ValueError):
    """``encoder.source`` is unset and there is nothing to resolve it to; the message says what to do."""


def pretrain_output_root() -> Path:
    """The folder ``python -m avbr.train`` writes its runs into by default (``outputs/pretrain``)."""
    import avbr.configs  # noqa: PLC0415

    cfg = OmegaConf.load(Path(avbr.configs.__file__).parent / "pretrain" / "config.yaml")
    template = str(OmegaConf.to_container(cfg, resolve=False)["train"]["output_dir"])
    if "${" not in template:  # one fixed run folder
        return Path(template).parent
    prefix = template.split("${")[0]
    return Path(prefix) if prefix.endswith("/") else Path(prefix).parent


def newest_export(root: Path, name: str) -> Path | None:
    """The newest ``<root>/<run>/encoder`` (absolute) whose ``encoder.json`` names model ``name``, or ``None``."""
    found = []
    for spec in root.glob("*/encoder/encoder.json"):
        try:
            if json.loads(spec.read_text()).get("name") == name and (spec.parent / "encoder.safetensors").is_file():
                found.append((spec.stat().st_mtime, str(spec.parent.resolve())))
        except (OSError, json.JSONDecodeError):
            continue
    return Path(max(found)[1]) if found else None


def resolve_encoder_source(encoder_cfg: dict[str, Any], root: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve ``encoder.source``.

    Args:
        encoder_cfg: the ``encoder`` config node as a dict.
        root: where pretraining runs are (default :func:`pretrain_output_root`).

    Returns:
        ``(cfg, info)``: ``cfg`` for ``avbr.adapters.build_encoder`` (``source`` is ``None`` for
        random init) and ``info = {"random_init": bool, "source": str, "selected": "explicit" |
        "newest_export"}`` for ``results.json``.

    Raises:
        EncoderSourceError: unset source with nothing to resolve it to.
    """
    from avbr.models import ENCODER_NAMES  # noqa: PLC0415

    name, source = encoder_cfg["name"], encoder_cfg.get("source")
    if source == RANDOM:
        return {**encoder_cfg, "source": None}, {"random_init": True, "source": RANDOM, "selected": "explicit"}
    if source is not None:
        return dict(encoder_cfg), {"random_init": False, "source": str(source), "selected": "explicit"}
    if name not in ENCODER_NAMES:
        raise EncoderSourceError(f"encoder.source is unset for {name!r}: give its weights (encoder.source=<hub id or "
                                 f"path>), or encoder.source={RANDOM} for the random-init control")
    root = pretrain_output_root() if root is None else root
    found = newest_export(root, name)
    if found is None:
        raise EncoderSourceError(
            f"encoder.source is unset and no {name} encoder exported by pretraining was found under {root.resolve()}/ "
            f"(looked for */encoder/encoder.json).\nPretrain one (it exports <run>/encoder there): "
            f"`python -m avbr.train model.encoder={name}`\nor pass encoder.source=<encoder folder>; for the "
            f"random-init control pass encoder.source={RANDOM}.")
    print(f"[eval] encoder.source unset: using the newest {name} encoder exported by pretraining, {found}", flush=True)
    return {**encoder_cfg, "source": str(found)}, {"random_init": False, "source": str(found), "selected": "newest_export"}
