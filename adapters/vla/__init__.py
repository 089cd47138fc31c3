"""VLA adapters: Pi0 and OpenVLA with an AVBR encoder in place of their vision backbone.

Read ``adapters/vla/README.md`` for the decisions (routes, key mappings, deviations). Public API:

* policies: :class:`Pi0Policy`, :class:`OpenVLAPolicy`, both an :class:`avbr.policy.Policy`
  (``reset(env_ids, tasks)``, ``act(obs, env_ids)``, per-env frame buffers and action queues)
  with the model-level ``predict_chunk`` and ``compute_loss``; built by name through
  :data:`VLAS` / :func:`build_policy`;
* networks: :class:`Pi0Model`, :class:`OpenVLAModel`;
* vision swap: :class:`BackboneConfig` (an ``avbr.adapters`` :class:`~avbr.adapters.EncoderConfig`),
  :func:`build_backbone`, :class:`VisionTokens`;
* released checkpoints: :func:`convert_lerobot_pi0`, :func:`convert_openvla_7b`, :func:`load_released`;
* fine-tuning: :func:`apply_lora`, :func:`save_finetuned`, :func:`load_finetuned`,
  ``python -m avbr.adapters.vla.finetune``; data: :class:`LiberoDemoDataset`.
"""

from .action_tokenizer import ActionTokenizer
from .backbone import BackboneConfig, VisionTokens, build_backbone
from .data import LiberoDemoDataset, collate, write_synthetic_demos
from .factory import (
    VLAS,
    LoraSettings,
    apply_lora,
    build_policy,
    load_finetuned,
    load_released,
    make_config,
    save_finetuned,
)
from .normalize import Normalizer
from .openvla import OpenVLAConfig, OpenVLAModel, OpenVLAPolicy, convert_openvla_7b
from .pi0 import Pi0Config, Pi0Model, Pi0Policy, convert_lerobot_pi0
from .policy import VLAPolicy
from .tokenizer import build_tiny_tokenizer, load_tokenizer

__all__ = [
    "ActionTokenizer",
    "BackboneConfig",
    "LiberoDemoDataset",
    "LoraSettings",
    "Normalizer",
    "OpenVLAConfig",
    "OpenVLAModel",
    "OpenVLAPolicy",
    "Pi0Config",
    "Pi0Model",
    "Pi0Policy",
    "VLAPolicy",
    "VLAS",
    "VisionTokens",
    "apply_lora",
    "build_backbone",
    "build_policy",
    "build_tiny_tokenizer",
    "collate",
    "convert_lerobot_pi0",
    "convert_openvla_7b",
    "load_finetuned",
    "load_released",
    "load_tokenizer",
    "make_config",
    "save_finetuned",
    "write_synthetic_demos",
]
